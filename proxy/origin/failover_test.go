package origin_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/health"
)

// TestFleetFailover: a node of a three-node fleet dies (its listener
// closed: connection refused). One probe round takes it down, reported
// once to OnChange; its blobs go to the others, each by rendezvous over
// the nodes still up, while the other nodes keep theirs; with every node
// down the origin serves the blobs itself.
func TestFleetFailover(t *testing.T) {
	tp := newTopology(t)
	var mu sync.Mutex
	var changes []health.Change
	tp.prober.OnNodeChange = func(c health.Change) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	}
	nodes := tp.fleet(t, 3)
	img := tp.push(t, "website/ui:a", 7)
	digests := blobDigests(img)
	c, err := tp.db.Cache("asia")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, d := range digests {
		before[d] = location(t, tp.origin.URL, "website/ui", d)
	}
	dead := nodes[1].srv.URL
	nodes[1].srv.CloseClientConnections()
	nodes[1].srv.Close()
	mu.Lock()
	changes = nil
	mu.Unlock()
	if !tp.prober.Probe(t.Context(), c) {
		t.Fatal("the fleet is down with two nodes of three up")
	}
	mu.Lock()
	if len(changes) != 1 || changes[0].Node != dead || changes[0].Up || changes[0].Class != health.ClassRefused {
		t.Fatalf("changes after the node died: %+v", changes)
	}
	mu.Unlock()
	up := tp.prober.NodeUp(c)
	for _, d := range digests {
		got := location(t, tp.origin.URL, "website/ui", d)
		want, _ := c.NodeFor(d, up)
		switch {
		case got == dead:
			t.Errorf("blob %s still sent to the dead node", d)
		case before[d] != dead && got != before[d]:
			t.Errorf("blob %s moved from %s to %s although its node is up", d, before[d], got)
		case got != want.URL:
			t.Errorf("blob %s sent to %s, rendezvous over the nodes up picks %s", d, got, want.URL)
		}
	}
	code, body := tp.api(t, "alice", "GET", "/api/v0/content_caches/asia", nil)
	if code != http.StatusOK || !contains(body, `"mode":"probe"`) || !contains(body, `"healthy":false`) {
		t.Fatalf("the API: %d %s", code, body)
	}

	for _, nd := range []int{0, 2} {
		nodes[nd].srv.CloseClientConnections()
		nodes[nd].srv.Close()
	}
	if tp.prober.Probe(t.Context(), c) {
		t.Fatal("the fleet is up with every node dead")
	}
	tp.reg.Counter.Reset()
	if _, err := tp.pull("alice", "website/ui:a"); err != nil {
		t.Fatalf("alice pulls with the whole fleet down: %v", err)
	}
	for _, d := range digests {
		if n := tp.reg.Counter.BlobGets(d); n != 1 {
			t.Errorf("blob %s: the origin served it %d times from the backend, want 1", d, n)
		}
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
