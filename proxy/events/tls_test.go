package events

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTLSAndGuard: certificates are verified unless skipTLSVerification;
// tlsCert adds the CA to trust; a refused address is refused at delivery
// too, whatever the webhook record says.
func TestTLSAndGuard(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(tlsSrv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
	tests := []struct {
		name     string
		hook     Webhook
		strict   bool
		ok       bool
		errorHas string
	}{
		{"unknown CA", Webhook{Endpoint: tlsSrv.URL}, false, false, "certificate"},
		{"tlsCert", Webhook{Endpoint: tlsSrv.URL, TLSCert: ca}, false, true, ""},
		{"skipTLSVerification", Webhook{Endpoint: tlsSrv.URL, SkipTLSVerification: true}, false, true, ""},
		{"refused address", Webhook{Endpoint: tlsSrv.URL, TLSCert: ca}, true, false, "loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := fastDelivery(t)
			d.MaxAttempts = 1
			if tt.strict {
				d.Guard = strictGuard(t)
			}
			s := startService(t, newStore(t), Config{Delivery: d})
			tt.hook.Type, tt.hook.AuthorID = TagPush, "admin"
			w, err := s.Subscriptions.Create(ctxT(t), tt.hook)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Outbox.Emit(ctxT(t), tagPush(t, "a/b", "1")); err != nil {
				t.Fatal(err)
			}
			var st deliveryState
			waitUntil(t, "an attempt", func() bool {
				st, _, _, _ = s.Subscriptions.deliveryState(ctxT(t), w.ID)
				return len(st.History) > 0
			})
			a := st.History[0]
			if a.Success != tt.ok || !strings.Contains(a.Error, tt.errorHas) {
				t.Fatalf("attempt %+v", a)
			}
		})
	}
}
