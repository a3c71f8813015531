package console

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Metrics are the console's Prometheus metrics.
type Metrics struct {
	signIns *prometheus.CounterVec
}

// NewMetrics registers the console's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dtrcache_console_signins_total",
		Help: "Sign-ins to the web console by result (ok, bad_credentials, rate_limited, bad_csrf).",
	}, []string{"result"})}
	reg.MustRegister(m.signIns)
	return m
}

func (m *Metrics) signIn(result string) {
	if m != nil {
		m.signIns.WithLabelValues(result).Inc()
	}
}

// handler is a page of a signed-in user.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// user requires a live session (else: to the sign-in page), and for a
// POST the session's CSRF token from a page of this console.
func (con *Console) user(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := con.sessions.current(r)
		if ok && !con.c.Users.Has(s.User) {
			con.sessions.end(r.Context(), s) // the account was removed
			ok = false
		}
		if !ok {
			if r.Method == http.MethodGet && r.URL.Query().Get("fragment") == "" {
				http.Redirect(w, r, "/console/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			con.errorPage(w, r, nil, http.StatusUnauthorized, "Your session has ended. Sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) || !tokenOK(r.PostFormValue("csrf"), s.CSRF) {
				con.c.Audit.Info("authorization", zap.String("user", s.User), zap.String("action", "console form"),
					zap.String("page", r.Method+" "+r.URL.Path), zap.Bool("allowed", false),
					zap.String("reason", "missing or wrong CSRF token, or a cross-site request"), zap.String("remote", r.RemoteAddr))
				con.errorPage(w, r, s, http.StatusForbidden, "This form was not sent from a page of this console (its CSRF token is missing or wrong). Reload the page and try again.")
				return
			}
		}
		h(w, r, s)
	}
}

// admin requires an administrator: the check behind the API's
// administrators-only calls (policy.Access.IsAdmin), audited the same way.
func (con *Console) admin(h handler) http.HandlerFunc {
	return con.user(func(w http.ResponseWriter, r *http.Request, s *session) {
		if !con.c.Access.IsAdmin(s.User) {
			con.c.Audit.Info("authorization", zap.String("user", s.User), zap.String("action", "admin"),
				zap.String("page", r.Method+" "+r.URL.Path), zap.Bool("allowed", false), zap.String("reason", "not an admin"),
				zap.String("remote", r.RemoteAddr))
			con.errorPage(w, r, s, http.StatusForbidden, "Only administrators may see this page.")
			return
		}
		h(w, r, s)
	})
}

// tokenOK compares a form's token with the expected one in constant time.
func tokenOK(got, want string) bool {
	return want != "" && len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin refuses what browsers mark as sent from another site (a
// second line behind the CSRF token and SameSite cookies).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	return true
}

// safeNext returns where to go after signing in: a console page, never
// another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/console/profile"
	}
	return next
}

type signInData struct {
	Next, Username string
}

func (con *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := con.sessions.current(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	con.renderSignIn(w, r, http.StatusOK, signInData{Next: safeNext(r.URL.Query().Get("next"))}, "")
}

// renderSignIn shows the sign-in form with a fresh pre-session token.
func (con *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, d signInData, problem string) {
	tok := randomToken()
	con.setCookie(w, r, signInCookie, tok, 0)
	con.render(w, r, status, "signin", page{Title: "Sign in", CSRF: tok, Error: problem, Data: d})
}

func (con *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	user, pass := r.PostFormValue("username"), r.PostFormValue("password")
	d := signInData{Next: safeNext(r.PostFormValue("next")), Username: user}
	audit := func(allowed bool, reason string) {
		con.c.Audit.Info("authorization", zap.String("user", user), zap.String("action", "console sign-in"),
			zap.Bool("allowed", allowed), zap.String("reason", reason), zap.String("remote", r.RemoteAddr))
	}
	c, err := r.Cookie(signInCookie)
	if err != nil || !sameOrigin(r) || !tokenOK(r.PostFormValue("csrf"), c.Value) {
		audit(false, "missing or wrong CSRF token")
		con.c.Metrics.signIn("bad_csrf")
		con.renderSignIn(w, r, http.StatusForbidden, d, "The sign-in form expired or was not sent from this console. Try again.")
		return
	}
	keys := []string{"user:" + user, clientKey(r)}
	if wait := con.limiter.wait(keys...); wait > 0 {
		audit(false, "too many failed sign-ins")
		con.c.Metrics.signIn("rate_limited")
		secs := int(wait.Seconds() + 0.999)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		con.renderSignIn(w, r, http.StatusTooManyRequests, d, "Too many failed sign-ins. Try again in "+strconv.Itoa(secs)+" s.")
		return
	}
	if user == "" || con.c.Users.Authenticate(user, pass) != nil {
		con.limiter.failed(keys...)
		audit(false, "invalid username or password")
		con.c.Metrics.signIn("bad_credentials")
		con.renderSignIn(w, r, http.StatusUnauthorized, d, "Invalid username or password.")
		return
	}
	id, _, err := con.sessions.create(r.Context(), user)
	if err != nil {
		con.c.Logger.Error("creating a console session", zap.Error(err))
		con.renderSignIn(w, r, http.StatusServiceUnavailable, d, "The origin's state store is unavailable; try again.")
		return
	}
	audit(true, "password")
	con.c.Metrics.signIn("ok")
	con.setCookie(w, r, signInCookie, "", -1)
	con.setCookie(w, r, sessionCookie, id, 0)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

func (con *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	if err := con.sessions.end(r.Context(), s); err != nil {
		con.c.Logger.Error("ending a console session", zap.Error(err))
	}
	con.c.Audit.Info("console sign-out", zap.String("user", s.User), zap.String("remote", r.RemoteAddr))
	con.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}
