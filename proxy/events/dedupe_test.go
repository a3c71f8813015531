package events

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state"
)

// fakeClock is the tests' clock for the Deduper (its rule is about time
// windows, and a test must not wait them out).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newDeduper(t *testing.T) (*Deduper, state.Store, *fakeClock) {
	store := newStore(t)
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := &Deduper{Store: store, Outbox: &Outbox{Store: store}, Window: time.Minute, Grace: 5 * time.Second, Host: "dtr.example.org", Now: clock.now}
	return d, store, clock
}

// outboxEvents returns what the outbox holds, in commit order.
func outboxEvents(t *testing.T, store state.Store) []Event {
	t.Helper()
	kvs, err := store.List(context.Background(), entryPrefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(kvs, func(i, j int) bool {
		return pos{kvs[i].Rev, kvs[i].Key}.less(pos{kvs[j].Rev, kvs[j].Key})
	})
	var out []Event
	for _, kv := range kvs {
		var ev Event
		if err := json.Unmarshal(kv.Value, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// summary is "TYPE:source" per event, in order.
func summary(t *testing.T, evs []Event) string {
	var parts []string
	for _, ev := range evs {
		var c ImageContents
		json.Unmarshal(ev.Contents, &c)
		s := string(ev.Type)
		if c.Source != "" {
			s += ":" + c.Source
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func pushEvents(t *testing.T, occ Occurrence, source string) []Event {
	img := Image{Repository: occ.Repository, Tag: occ.Tag, Digest: occ.Digest, Host: "dtr.example.org"}
	mp, err := NewImageEvent(ManifestPush, img, occ.Author, time.Now(), source)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := NewImageEvent(TagPush, img, occ.Author, time.Now(), source)
	if err != nil {
		t.Fatal(err)
	}
	return []Event{mp, tp}
}

// TestDedupe checks the rule on sequences of reports of one push: O is
// the origin's report, R<n> the registry's notification number n, S a
// sweep after the grace has passed.
func TestDedupe(t *testing.T) {
	occ := Occurrence{Action: ActionPush, Repository: "team/app", Tag: "1.0", Digest: sampleDigest, Author: "alice"}
	const once = "MANIFEST_PUSH:origin TAG_PUSH:origin"
	const direct = "MANIFEST_PUSH:registry TAG_PUSH:registry"
	tests := []struct {
		name, steps, want string
	}{
		{"origin only (no notifications configured)", "O S", once},
		{"origin first, then its notification", "O R1 S", once},
		{"notification first, then the origin", "R1 O S", once},
		{"straight to the registry", "R1 S", direct},
		{"a notification sent twice", "R1 R1 S", direct},
		{"a notification sent again after it was matched", "O R1 R1 S", once},
		{"re-push through the origin, interleaved", "O R1 O R2 S", once + " " + once},
		{"re-push through the origin, notifications late", "O O R1 R2 S", once + " " + once},
		{"re-push through the origin, notifications early", "R1 O R2 O S", once + " " + once},
		{"a push through the origin and one straight to the registry", "O R1 R2 S", once + " " + direct},
		{"a notification after the window is another push", "O W R1 S", once + " " + direct},
		{"the origin after the grace is another push", "R1 S O", direct + " " + once},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, store, clock := newDeduper(t)
			ctx := ctxT(t)
			for _, step := range strings.Fields(tt.steps) {
				var err error
				switch {
				case step == "O":
					err = d.Origin(ctx, occ, pushEvents(t, occ, SourceOrigin)...)
				case step == "S":
					clock.advance(d.Grace + time.Second)
					d.sweep(ctx)
				case step == "W":
					clock.advance(d.Window + time.Second)
				case strings.HasPrefix(step, "R"):
					_, err = d.Registry(ctx, "notification-"+step, occ, func(context.Context) ([]Event, error) {
						return pushEvents(t, occ, SourceRegistry), nil
					})
				}
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
			}
			if got := summary(t, outboxEvents(t, store)); got != tt.want {
				t.Fatalf("outbox:\n got %s\nwant %s", got, tt.want)
			}
			d.sweep(ctx)
			clock.advance(time.Hour)
			d.gc(ctx)
			for _, p := range []string{slotPrefix, heldPrefix, notifPrefix} {
				if kvs, _ := store.List(ctx, p, "", 0); len(kvs) != 0 {
					t.Errorf("%d records left under %s after they expired", len(kvs), p)
				}
			}
		})
	}
}

// TestDedupeDeletesAndBlobs: deletes pair like pushes; a blob delete the
// origin proxied (no event of ours) swallows the notification that looks
// like a manifest delete.
func TestDedupeDeletesAndBlobs(t *testing.T) {
	d, store, clock := newDeduper(t)
	ctx := ctxT(t)
	tagDel := Occurrence{Action: ActionDelete, Repository: "team/app", Tag: "old"}
	ev, _ := NewImageEvent(TagDelete, Image{Repository: "team/app", Tag: "old"}, "bob", time.Now(), SourceOrigin)
	if err := d.Origin(ctx, tagDel, ev); err != nil {
		t.Fatal(err)
	}
	blob := Occurrence{Action: ActionDelete, Repository: "team/app", Digest: sampleDigest}
	if err := d.Origin(ctx, blob); err != nil {
		t.Fatal(err)
	}
	for i, occ := range []Occurrence{tagDel, blob} {
		if _, err := d.Registry(ctx, "n"+string(rune('a'+i)), occ, func(context.Context) ([]Event, error) {
			t.Fatal("a matched notification built its events")
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(time.Minute)
	d.sweep(ctx)
	if got := summary(t, outboxEvents(t, store)); got != "TAG_DELETE:origin" {
		t.Fatalf("outbox: %s", got)
	}
}

// TestRepoEvents: after seeding, the first push to a repository makes
// REPO_CREATED (once, whichever source records it); a delete makes
// REPO_DELETED and the next push creates it again.
func TestRepoEvents(t *testing.T) {
	d, store, clock := newDeduper(t)
	ctx := ctxT(t)
	push := func(repo, tag string) {
		occ := Occurrence{Action: ActionPush, Repository: repo, Tag: tag, Digest: sampleDigest, Author: "alice"}
		if err := d.Origin(ctx, occ, pushEvents(t, occ, SourceOrigin)[1]); err != nil {
			t.Fatal(err)
		}
	}
	push("before/seeding", "1")
	if err := d.SeedRepositories(ctx, []string{"old/repo", "before/seeding"}, true); err != nil {
		t.Fatal(err)
	}
	push("old/repo", "1")
	push("new/repo", "1")
	push("new/repo", "2")
	direct := Occurrence{Action: ActionPush, Repository: "direct/repo", Tag: "1", Digest: sampleDigest, Author: "ci"}
	if _, err := d.Registry(ctx, "x", direct, func(context.Context) ([]Event, error) { return pushEvents(t, direct, SourceRegistry)[1:], nil }); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	d.sweep(ctx)
	if err := d.RepoDeleted(ctx, "del-1", "new/repo", "admin", clock.now()); err != nil {
		t.Fatal(err)
	}
	if err := d.RepoDeleted(ctx, "del-1", "new/repo", "admin", clock.now()); err != nil {
		t.Fatal(err)
	}
	push("new/repo", "3")
	var got []string
	for _, ev := range outboxEvents(t, store) {
		if ev.Type != RepoEvent {
			continue
		}
		var c RepoContents
		json.Unmarshal(ev.Contents, &c)
		got = append(got, c.Event+" "+JoinName(c.Namespace, c.Repository)+" by "+c.Author)
	}
	want := []string{"REPO_CREATED new/repo by alice", "REPO_CREATED direct/repo by ci", "REPO_DELETED new/repo by admin", "REPO_CREATED new/repo by alice"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("repository events:\n got %q\nwant %q", got, want)
	}
}

// TestConcurrentReports: the origin's and the registry's reports of many
// pushes racing each other still record each push once.
func TestConcurrentReports(t *testing.T) {
	d, store, clock := newDeduper(t)
	ctx := ctxT(t)
	const pushes = 40
	var wg sync.WaitGroup
	for i := range pushes {
		occ := Occurrence{Action: ActionPush, Repository: "team/app", Tag: "t" + string(rune('a'+i%4)), Digest: sampleDigest}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := d.Origin(ctx, occ, pushEvents(t, occ, SourceOrigin)[1]); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := d.Registry(ctx, "n"+string(rune(i)), occ, func(context.Context) ([]Event, error) {
				return pushEvents(t, occ, SourceRegistry)[1:], nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	clock.advance(time.Minute)
	d.sweep(ctx)
	if n := len(outboxEvents(t, store)); n != pushes {
		t.Fatalf("%d events for %d pushes", n, pushes)
	}
}
