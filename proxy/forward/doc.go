// Package forward is the cache's face for office networks: an HTTP(S)
// forward proxy (the Docker and containerd hosts' HTTPS_PROXY) that serves
// registry blobs from the store and is never an open relay.
//
// # What happens to a request
//
// A client's CONNECT host:port is decided by Rules:
//
//   - intercept list (registry hosts) → MITM: the proxy answers 200, ends
//     TLS with a leaf certificate for the host signed by the office CA
//     (package ca; one leaf per host, cached, bounded), and reads the
//     HTTP requests inside;
//   - tunnel list (token services, the object storage registries
//     redirect to) → a blind tunnel, bytes untouched, the server's own
//     certificate;
//   - anything else → 403.
//
// The client must be in the client allow list (default: loopback and
// private networks), the port in the port allow list (default 443, or the
// port named in the entry), and every address the host resolves to must be
// public unless it is in allow_private: loopback, private, link-local
// (169.254.169.254, the metadata services), CGNAT, multicast and reserved
// addresses are refused. The guarded dialer (Rules.DialContext) resolves
// once, checks every address and dials the checked addresses — never the
// name again — so DNS rebinding cannot slip past the check. Every
// connection the proxy opens (tunnels, forwarded requests, probes, fills
// and the redirects they follow) goes through it. A static host map
// (Hosts) answers for names first: split-horizon DNS, and tests that name
// a loopback registry "registry.test". Plain-HTTP proxy requests
// ("GET http://host/…") are accepted for intercepted hosts only.
//
// Inside an intercepted connection, the Host of each request must be the
// CONNECT target (421 otherwise). Only GET and HEAD of
// /v2/<repo>/blobs/<digest> touch the store; every other request is
// forwarded unchanged — method, headers, body, status, streaming,
// Content-Length — and the registry's answer relayed.
//
// # Blobs: authorization first
//
// Before the store answers, the registry is asked whether this client may
// read this blob: a HEAD of the blob with the client's own Authorization
// (and Cookie, and query string), redirects not followed. 2xx or 3xx is a
// yes and is remembered for at most AuthTTL (≤ 60 s) under (sha256 of
// those credentials, registry, repository, digest). The digest is in the
// key because registries authorize blobs per repository: a user who may
// pull repository a still gets 404 for a digest that is not linked in a,
// and must not get it from the store. Any other answer is a no: the
// request is forwarded unchanged, so the client gets the registry's own
// 401 with its WWW-Authenticate challenge (no Authorization at all is
// fine), 403 or 404. A DELETE forwarded for a repository drops what is
// remembered for it.
//
// Manifests vouch for what they list (vouch.go): a 200 for a client's
// GET /v2/<repo>/manifests/<ref> remembers the digests the manifest
// lists (config and layers, an index's child manifests) under the same
// key and TTL, before the client has the manifest's last byte, so the
// blob GETs of a pull need no HEAD. That trusts the registry to refuse
// manifests whose blobs are not in the repository, as distribution does;
// Options.NoManifestVouching turns it off.
//
// Then a hit is served from the store (regapi.ServeBlob: digest headers,
// Range → 206/416, If-None-Match → 304, HEAD). A miss calls
// casstore.Fill: one fill per digest across all clients, streamed to every
// waiting client while it is written and verified. The fill's source uses
// the credentials of the client that started it and follows the
// registry's redirects (object storage) without sending those credentials
// to any other host; clients that join a running fill were authorized by
// their own HEAD. A HEAD that misses the store is forwarded (it never
// starts a fill). If the registry refuses the GET after all, or the store
// will not take the blob (too large), the request is forwarded. A failure
// after the headers were sent aborts the connection, so a cut body never
// looks complete.
//
// # A blob mirror: several proxy nodes, one WAN transfer
//
// With Options.BlobMirror (the office's mirror fleet, or its load
// balancer), a miss is filled from
// <mirror>/v2/<repo>/blobs/<digest>?ns=<registry> instead of the registry:
// without the client's credentials (the mirror reads the registry with its
// own account), redirects not followed. The authorization check above is
// unchanged — the registry confirms every client before the store answers
// and before a fill starts — so the mirror only saves the WAN. Every
// Fetch of a fill (the first, and each resume) tries the mirror first and
// the registry, with the client's credentials, when the mirror fails: it
// is down, does not mirror the registry, or may not read the repository.
// casstore verifies the digest of whatever arrives.
//
// # How goproxy is used, and where not
//
// goproxy (github.com/elazarl/goproxy) handles the proxy protocol: the
// CONNECT handler (HandleConnectFunc) returns ConnectReject with a 403,
// ConnectAccept for tunnels (dialled by ConnectDialWithReq through the
// guarded dialer; ConnectionErrHandler turns a refused address into 403),
// or ConnectHijack for interception; every forwarded request goes through
// its ServeHTTP with Tr set to the registry transport, KeepAcceptEncoding,
// and an OnResponse hook that turns transport failures into registry JSON
// errors.
//
// Intercepted connections are not served by goproxy's own MITM loop
// (ConnectMitm, https.go): it handshakes without a deadline, reads
// requests with no header or idle timeout, never cancels a request's
// context when the client goes away, and keeps the connection out of reach
// of http.Server's graceful shutdown. goproxy's MITM path would write a
// DoFunc response with a correct Content-Length, 206 and HEAD, but it
// needs the body as an *http.Response, while blobs are served by
// regapi.ServeBlob on an http.ResponseWriter (and its abort contract). So
// ConnectHijack hands each intercepted connection, wrapped in TLS, to an
// http.Server of our own (ReadHeaderTimeout, IdleTimeout, keep-alive,
// graceful shutdown). Its handler serves blob reads itself and passes
// every other request, made absolute, back into goproxy's ServeHTTP —
// the same forwarding path as plain-HTTP proxy requests. goproxy's leaf
// signer is not used either: it derives each leaf's private key
// deterministically from the CA key and the host name; package ca issues
// leaves with fresh random keys.
//
// # Timeouts and keep-alive
//
// Towards registries: the transport of package upstream (dial, TLS
// handshake and response-header timeouts, keep-alive, HTTP/1.1 only; the
// verified roots are the system's plus the configured CAs), with
// compression off so Accept-Encoding passes as sent. Towards clients:
// header and idle timeouts on both servers, a write deadline on every
// write (a client that stops reading is dropped), and tunnels closed after
// IdleTimeout without a byte in either direction. Shutdown waits up to
// Grace for requests in flight; idle tunnels are closed at once.
//
// # Logs and metrics
//
// One log line per request (host, method, path, status, bytes, duration,
// repo, digest, result hit|miss|joined|not_modified|forward|denied|error
// for requests and mitm|tunnel|denied for CONNECTs, auth
// vouched|cached|allowed|denied, reason). Metrics: dtrcache_forward_requests_total
// {result}, dtrcache_forward_connects_total{action},
// dtrcache_forward_auth_checks_total{result},
// dtrcache_forward_bytes_total{source},
// dtrcache_forward_manifest_vouches_total,
// dtrcache_forward_fill_fetches_total{upstream,result} (with a blob
// mirror), and
// dtrcache_forward_leaf_certs_issued_total.
package forward
