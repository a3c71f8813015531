package events_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/events"
)

// A receiver checks the signature over the raw body before trusting it,
// and drops ids it has seen (deliveries are at least once).
func ExampleVerify() {
	secret := "3f1c0d5e9a7b4c2e8f6a1d3b5c7e9f0a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a" // shown once, at creation
	seen := map[string]bool{}
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !events.Verify(secret, body, r.Header.Get("X-Dtrcache-Signature-256")) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if id := r.Header.Get("X-Dtrcache-Event-Id"); !seen[id] {
			seen[id] = true
			fmt.Println("new event", id)
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx: delivered
	})

	// What the origin sends:
	body := `{"type":"TAG_PUSH","createdAt":"2025-06-01T12:00:00Z","id":"01a2336796400000-5f1d9a4b11e2","contents":{}}`
	for range 2 {
		req := httptest.NewRequest("POST", "/hook", strings.NewReader(body))
		req.Header.Set("X-Dtrcache-Event-Id", "01a2336796400000-5f1d9a4b11e2")
		req.Header.Set("X-Dtrcache-Signature-256", events.Sign(secret, []byte(body)))
		w := httptest.NewRecorder()
		receiver.ServeHTTP(w, req)
		fmt.Println(w.Code)
	}
	fmt.Println(events.Sign(secret, []byte(body)))
	// Output:
	// new event 01a2336796400000-5f1d9a4b11e2
	// 204
	// 204
	// sha256=68180d2e6ef0f7e32739a924f132b088a8230f4d2a41e850b18bf5fcc10849c4
}
