package events

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"go.uber.org/zap"
)

// The crash tests run a child copy of this test binary that emits events
// and delivers them, kill it with SIGKILL, start again on the same store
// and check that every event the child had emitted is delivered.
const (
	envCrashDir  = "EVENTS_CRASH_DIR"
	envCrashMode = "EVENTS_CRASH_MODE"
)

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	tests := []struct {
		mode string
		// killAt says when to kill, from what the child printed and what
		// the receiver accepted.
		killAt func(emitted, accepted int, ready bool) bool
	}{
		// 100 emitted, 30 delivered, the receiver refusing the rest.
		{"undelivered", func(emitted, accepted int, ready bool) bool { return ready && accepted >= 30 }},
		// Killed while emitting: whatever it reported as emitted counts.
		{"emitting", func(emitted, accepted int, _ bool) bool { return emitted >= 60 }},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			rc := newReceiver(t)
			var mu sync.Mutex
			open := 30 // requests accepted before the receiver goes down
			rc.set(func(n int, _ Event) int {
				mu.Lock()
				defer mu.Unlock()
				if open < 0 || n < open {
					return http.StatusOK
				}
				return http.StatusServiceUnavailable
			}, nil)
			hook := crashWebhook(t, dir, rc.url())
			emitted := killChild(t, tt.mode, dir, func(emitted int, ready bool) bool {
				return tt.killAt(emitted, len(rc.accepted()), ready)
			})
			if len(emitted) == 0 {
				t.Fatal("the child emitted nothing")
			}
			mu.Lock()
			open = -1 // back up
			mu.Unlock()

			store, err := badgerstate.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			startService(t, store, Config{})
			want := map[string]int{}
			for i, id := range emitted {
				want[id] = i
			}
			got := rc.waitFor(t, "every emitted event accepted", func(ds []delivery) bool {
				seen := map[string]bool{}
				for _, d := range accepted(ds) {
					if _, ok := want[d.event.ID]; ok {
						seen[d.event.ID] = true
					}
				}
				return len(seen) == len(want)
			})
			// Each id always with the same body and a good signature; in
			// emission order, first acceptances.
			bodies := map[string]string{}
			last := -1
			firstSeen := map[string]bool{}
			for _, d := range got {
				if !Verify(hook.Secret, d.body, d.header.Get(HeaderSignature)) {
					t.Fatalf("signature of %s does not verify", d.event.ID)
				}
				if b, ok := bodies[d.event.ID]; ok && b != string(d.body) {
					t.Fatalf("%s delivered with two bodies", d.event.ID)
				}
				bodies[d.event.ID] = string(d.body)
				i, ok := want[d.event.ID]
				if !ok {
					if tt.mode == "undelivered" {
						t.Fatalf("delivered %s, which the child never emitted", d.event.ID)
					}
					continue // committed but killed before it said so
				}
				if d.status == http.StatusOK && !firstSeen[d.event.ID] {
					firstSeen[d.event.ID] = true
					if i < last {
						t.Fatalf("event %d accepted after event %d", i, last)
					}
					last = i
				}
			}
			t.Logf("%s: %d emitted, %d requests, %d distinct events delivered", tt.mode, len(emitted), len(got), len(bodies))
		})
	}
}

// crashWebhook makes the webhook in a fresh store at dir and closes it.
func crashWebhook(t *testing.T, dir, endpoint string) Webhook {
	t.Helper()
	store, err := badgerstate.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	w, err := NewSubscriptions(store, nil).Create(ctxT(t), Webhook{Type: TagPush, Key: "team", Endpoint: endpoint, AuthorID: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// killChild starts the child, reads the ids it reports as emitted, kills
// it with SIGKILL once kill says so, and returns the ids.
func killChild(t *testing.T, mode, dir string, kill func(emitted int, ready bool) bool) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashMode+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
	}()
	var ids []string
	ready := false
	tick := time.NewTicker(5 * time.Millisecond) // to look at the receiver's count between lines
	defer tick.Stop()
	for !kill(len(ids), ready) {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("the child ended before it was killed (%d emitted)", len(ids))
			}
			if id, ok := strings.CutPrefix(l, "emitted "); ok {
				ids = append(ids, id)
			} else if l == "ready" {
				ready = true
			}
		case <-tick.C:
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for l := range lines { // what it printed before the signal landed counts
		if id, ok := strings.CutPrefix(l, "emitted "); ok {
			ids = append(ids, id)
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed by SIGKILL: %v", err)
	}
	return ids
}

// TestCrashChild is the child half of TestCrashRecovery; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	dir, mode := os.Getenv(envCrashDir), os.Getenv(envCrashMode)
	if dir == "" {
		t.Skip("only runs as the child of TestCrashRecovery")
	}
	store, err := badgerstate.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := fastDelivery(t)
	d.MaxAttempts = 1 << 20
	s, err := NewService(Config{Store: store, Delivery: d, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(context.Background())
	n := 100
	if mode == "emitting" {
		n = 1 << 30
	}
	for i := 0; i < n; i++ {
		evs, err := s.Outbox.Emit(context.Background(), tagPush(t, "team/app", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("emitted " + evs[0].ID)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute) // wait to be killed
}
