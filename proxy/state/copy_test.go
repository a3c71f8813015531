package state_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
)

func openBadger(t *testing.T) state.Store {
	t.Helper()
	s, err := badgerstate.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCopyAndVerify copies more keys than a page and a transaction hold,
// with an empty value, large values and one at the transaction limit.
func TestCopyAndVerify(t *testing.T) {
	ctx := context.Background()
	src, dst := openBadger(t), openBadger(t)
	want := map[string][]byte{}
	var ops []state.Op
	flush := func() {
		if _, err := src.Txn(ctx, nil, ops...); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range 1300 {
		k, v := fmt.Sprintf("jobs/%05d", i), []byte(fmt.Sprintf(`{"n":%d}`, i))
		want[k] = v
		if ops = append(ops, state.Put(k, v)); len(ops) == state.MaxTxnOps {
			flush()
		}
	}
	flush()
	big := bytes.Repeat([]byte("x"), 600<<10)
	atLimit := bytes.Repeat([]byte("y"), state.MaxTxnBytes-len("z/at-limit"))
	for k, v := range map[string][]byte{"cache/a": big, "cache/b": big, "settings/empty": nil, "z/at-limit": atLimit} {
		want[k] = v
		if _, err := src.Txn(ctx, nil, state.Put(k, v)); err != nil {
			t.Fatal(err)
		}
	}
	var calls int
	var lastKeys int64
	n, err := state.Copy(ctx, dst, src, state.CopyOptions{Progress: func(keys, _ int64) { calls++; lastKeys = keys }})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(want)) || lastKeys != n || calls < len(want)/state.MaxTxnOps {
		t.Fatalf("copied %d keys in %d progress calls (last %d), want %d", n, calls, lastKeys, len(want))
	}
	for k, v := range want {
		kv, err := dst.Get(ctx, k)
		if err != nil || !bytes.Equal(kv.Value, v) {
			t.Fatalf("%s in the destination: %d bytes, %v", k, len(kv.Value), err)
		}
	}
	if compared, extra, err := state.Verify(ctx, dst, src, false); err != nil || compared != n || extra != 0 {
		t.Fatalf("Verify: %d compared, %d extra, %v", compared, extra, err)
	}

	// A second copy finds the keys there.
	if _, err := state.Copy(ctx, dst, src, state.CopyOptions{}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("copy into a store that has the keys: %v, want ErrConflict", err)
	}
	// Verify names a changed, a missing and an extra key.
	if _, err := dst.Txn(ctx, nil, state.Put("jobs/00007", []byte("changed")), state.Delete("jobs/01000"), state.Put("jobs/zz", nil)); err != nil {
		t.Fatal(err)
	}
	_, extra, err := state.Verify(ctx, dst, src, false)
	if err == nil || !strings.Contains(err.Error(), "3 mismatches") || !strings.Contains(err.Error(), "jobs/00007 differs") || extra != 1 {
		t.Fatalf("Verify after changes: %v (extra %d)", err, extra)
	}
	if _, _, err := state.Verify(ctx, dst, src, true); err == nil || !strings.Contains(err.Error(), "2 mismatches") {
		t.Fatalf("Verify allowing extras: %v", err)
	}
	// Overwrite repairs the copy; the extra key stays.
	if _, err := state.Copy(ctx, dst, src, state.CopyOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if _, extra, err := state.Verify(ctx, dst, src, true); err != nil || extra != 1 {
		t.Fatalf("Verify after an overwriting copy: %v (extra %d)", err, extra)
	}
}
