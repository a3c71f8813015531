package replicate

import (
	"crypto/tls"
	"net/http"

	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/upstream"
)

// GuardedTransport returns the upstream transport (see
// upstream.NewTransport) with every connection dialled through guard: the
// registry, its token realm and whatever it redirects to are all checked,
// so a remote registry named by a user cannot lead the engine to loopback,
// private or link-local addresses the guard does not allow. Use it for the
// upstream.Client of every remote a policy names.
func GuardedTransport(tlsConf *tls.Config, guard *netguard.Dialer) *http.Transport {
	t := upstream.NewTransport(tlsConf)
	t.DialContext = guard.DialContext
	return t
}
