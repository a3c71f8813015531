package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// page is what every page's template gets.
type page struct {
	Title string
	// Nav names the section of the navigation to mark current.
	Nav string
	// User is the signed-in user ("" on the sign-in page); Admin whether
	// they administer the registry.
	User  string
	Admin bool
	// CSRF is the token the page's forms carry.
	CSRF string
	// Notice is a message of success; Error one of failure, with the
	// fields the API named.
	Notice, Error string
	Problems      []problem
	// Data is the page's own data.
	Data any
}

// Problem returns the message of the problem with field, if any (for the
// form templates).
func (p page) Problem(field string) string {
	for _, pr := range p.Problems {
		if pr.Field == field {
			return pr.Message
		}
	}
	return ""
}

// renderer holds the parsed templates: one per page, each the layout
// with the page's content.
type renderer struct {
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"bytes":    humanBytes,
	"when":     func(t time.Time) string { return when(t) },
	"short":    shortDigest,
	"percent":  func(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) },
	"join":     strings.Join,
	"ms":       func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	"add":      func(a, b int) int { return a + b },
	"contains": func(list []string, s string) bool { return contains(list, s) },
	"lines":    func(v []string) string { return strings.Join(v, "\n") },
	"int64":    func(f float64) int64 { return int64(f) },
	"keyClass": keyClass,
}

// keyClass names the legend class of a chart colour.
func keyClass(color string) string {
	switch color {
	case colorA:
		return "a"
	case colorB:
		return "b"
	case colorUp: // colorC is the same green
		return "up"
	case colorDown:
		return "down"
	}
	return "n"
}

func newRenderer() (*renderer, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	r := &renderer{pages: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFiles, n)
		if err != nil {
			return nil, err
		}
		r.pages[base] = t
	}
	return r, nil
}

// render writes a page of the console. A page of a signed-in user gets
// its user, admin flag and CSRF token from s.
func (con *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, ok := con.pages.pages[name]
	if !ok {
		con.c.Logger.Error("console: no template", zap.String("template", name))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	tmpl := "layout.html"
	if r.URL.Query().Get("fragment") != "" && t.Lookup("fragment") != nil {
		tmpl = "fragment" // the part a script refreshes
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		con.c.Logger.Error("console: rendering a page", zap.String("template", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// pageFor starts the page data of a signed-in user's page.
func (con *Console) pageFor(s *session, nav, title string) page {
	return page{Title: title, Nav: nav, User: s.User, Admin: con.c.Access.IsAdmin(s.User), CSRF: s.CSRF}
}

// errorPage shows an error with its status (s is nil when nobody is
// signed in).
func (con *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	p := page{Title: http.StatusText(status), Error: msg, Data: status}
	if s != nil {
		p = con.pageFor(s, "", http.StatusText(status))
		p.Error, p.Data = msg, status
	}
	con.render(w, r, status, "error", p)
}

// failed shows the error of an API call: its status and message.
func (con *Console) failed(w http.ResponseWriter, r *http.Request, s *session, err error) {
	con.errorPage(w, r, s, statusOf(err), err.Error())
}

// staticHandler serves the embedded assets (immutable for a build).
func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFiles, "static")
	files := http.StripPrefix("/console/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// humanBytes formats a byte count with binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// when formats a time for the pages (UTC, to the second).
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// shortDigest shortens sha256:abcdef… to sha256:abcdef012345.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
