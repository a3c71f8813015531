package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func promo(id, from, to string) PromotionPolicy {
	return PromotionPolicy{ID: id, Enabled: true, SourceRepository: from, TargetRepository: to}
}

func TestDetectPromotionCycle(t *testing.T) {
	chain := []PromotionPolicy{promo("p1", "dev/app", "qa/app"), promo("p2", "qa/app", "prod/app")}
	disabled := promo("p3", "prod/app", "dev/app")
	disabled.Enabled = false
	named := promo("", "prod/app", "dev/app")
	named.Name = "back-to-dev"

	tests := []struct {
		name      string
		existing  []PromotionPolicy
		candidate PromotionPolicy
		want      string // "" for no loop
	}{
		{"chain extends", chain, promo("p3", "prod/app", "archive/app"), ""},
		{"fan out", chain, promo("p3", "dev/app", "prod/app"), ""},
		{"closing the chain", chain, promo("p3", "prod/app", "dev/app"),
			`policy: promotion policies form a loop: prod/app -> dev/app -> qa/app -> prod/app (policies "p3", "p1", "p2")`},
		{"new policy without id", chain, promo("", "prod/app", "dev/app"),
			`policy: promotion policies form a loop: prod/app -> dev/app -> qa/app -> prod/app (policies (new), "p1", "p2")`},
		{"named policy", chain, named,
			`policy: promotion policies form a loop: prod/app -> dev/app -> qa/app -> prod/app (policies "back-to-dev", "p1", "p2")`},
		{"two-step loop", chain[:1], promo("p9", "qa/app", "dev/app"),
			`policy: promotion policies form a loop: qa/app -> dev/app -> qa/app (policies "p9", "p1")`},
		{"self loop", nil, promo("p1", "dev/app", "dev/app"),
			`policy: promotion policies form a loop: dev/app -> dev/app (policies "p1")`},
		{"disabled candidate", chain, disabled, ""},
		{"disabled existing", []PromotionPolicy{chain[0], chain[1], disabled}, promo("p4", "prod/app", "archive/app"), ""},
		{"enabling a disabled one", []PromotionPolicy{chain[0], chain[1], disabled}, promo("p3", "prod/app", "dev/app"),
			`policy: promotion policies form a loop: prod/app -> dev/app -> qa/app -> prod/app (policies "p3", "p1", "p2")`},
		{"update breaks the loop", []PromotionPolicy{chain[0], chain[1], promo("p3", "prod/app", "dev/app")}, promo("p3", "prod/app", "archive/app"), ""},
		{"update moves an edge into a loop", chain, promo("p2", "qa/app", "dev/app"),
			`policy: promotion policies form a loop: qa/app -> dev/app -> qa/app (policies "p2", "p1")`},
		{"existing loop elsewhere", []PromotionPolicy{promo("a", "x/a", "x/b"), promo("b", "x/b", "x/a")}, promo("c", "dev/app", "qa/app"),
			`policy: promotion policies form a loop: x/a -> x/b -> x/a (policies "a", "b")`},
		{"shortest loop through the candidate", []PromotionPolicy{
			promo("p1", "b", "c"), promo("p2", "c", "d"), promo("p3", "d", "a"), promo("p4", "b", "a"),
		}, promo("p0", "a", "b"), `policy: promotion policies form a loop: a -> b -> a (policies "p0", "p4")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := DetectPromotionCycle(tc.existing, tc.candidate)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *CycleError
			if !errors.Is(err, ErrPromotionCycle) || !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *CycleError", err)
			}
			if err.Error() != tc.want {
				t.Errorf("err = %q\nwant  %q", err, tc.want)
			}
			if len(ce.Repositories) != len(ce.Policies)+1 || ce.Repositories[0] != ce.Repositories[len(ce.Repositories)-1] {
				t.Errorf("malformed cycle %+v", ce)
			}
		})
	}
}

func TestCheckPromotionCycles(t *testing.T) {
	if err := CheckPromotionCycles([]PromotionPolicy{promo("a", "dev/app", "qa/app"), promo("b", "qa/app", "prod/app"), promo("c", "dev/app", "prod/app")}); err != nil {
		t.Errorf("a diamond is no loop: %v", err)
	}
	// The loop reported does not depend on the order policies come in.
	set := []PromotionPolicy{promo("c", "z/c", "z/a"), promo("b", "z/b", "z/c"), promo("a", "z/a", "z/b")}
	want := `policy: promotion policies form a loop: z/a -> z/b -> z/c -> z/a (policies "a", "b", "c")`
	for i := 0; i < 3; i++ {
		set = append(set[1:], set[0])
		err := CheckPromotionCycles(set)
		if err == nil || err.Error() != want {
			t.Errorf("order %d: err = %v, want %s", i, err, want)
		}
	}
	// A long chain is walked without trouble.
	var long []PromotionPolicy
	for i := 0; i < 2000; i++ {
		long = append(long, promo("", repoN(i), repoN(i+1)))
	}
	if err := CheckPromotionCycles(long); err != nil {
		t.Fatal(err)
	}
	err := DetectPromotionCycle(long, promo("close", repoN(2000), repoN(0)))
	var ce *CycleError
	if !errors.As(err, &ce) || len(ce.Repositories) != 2002 ||
		!strings.HasPrefix(err.Error(), "policy: promotion policies form a loop: r/2000 -> r/0 -> r/1 -> r/2 ->") {
		t.Errorf("long loop: %.200v", err)
	}
}

func repoN(i int) string { return "r/" + strconv.Itoa(i) }
