package console

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// cacheInfo is a registered cache as the caches API shows it.
type cacheInfo struct {
	Name      string    `json:"name"`
	Host      string    `json:"host"`
	ProbeHost string    `json:"probeHost"`
	Account   string    `json:"account"`
	Created   time.Time `json:"created"`
	Healthy   bool      `json:"healthy"`
	LastCheck time.Time `json:"lastCheck"`
	Reason    string    `json:"reason"`
	RTTMillis float64   `json:"rttMs"`
}

// listCaches asks the caches API, as user.
func (con *Console) listCaches(r *http.Request, user string) ([]cacheInfo, error) {
	var cs []cacheInfo
	err := con.call(r, user, http.MethodGet, "/api/v0/content_caches", nil, &cs)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs, err
}

type profileData struct {
	Caches   []cacheInfo
	Selected string
}

func (con *Console) profile(w http.ResponseWriter, r *http.Request, s *session) {
	con.showProfile(w, r, s, http.StatusOK, "", nil)
}

func (con *Console) showProfile(w http.ResponseWriter, r *http.Request, s *session, status int, notice string, failure error) {
	p := con.pageFor(s, "profile", "My profile")
	p.Notice = notice
	if failure != nil {
		p.Error = failure.Error()
	}
	var d profileData
	var err error
	if d.Caches, err = con.listCaches(r, s.User); err != nil {
		con.failed(w, r, s, err)
		return
	}
	var st struct {
		ContentCache string `json:"contentCache"`
	}
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/accounts/"+url.PathEscape(s.User)+"/settings", nil, &st); err != nil {
		con.failed(w, r, s, err)
		return
	}
	d.Selected = st.ContentCache
	p.Data = d
	con.render(w, r, status, "profile", p)
}

func (con *Console) setProfile(w http.ResponseWriter, r *http.Request, s *session) {
	choice := r.PostFormValue("contentCache")
	err := con.call(r, s.User, http.MethodPatch, "/api/v0/accounts/"+url.PathEscape(s.User)+"/settings",
		map[string]string{"contentCache": choice}, nil)
	if err != nil {
		con.showProfile(w, r, s, statusOf(err), "", err)
		return
	}
	notice := "Your pulls now come from the origin."
	if choice != "" {
		notice = "Your pulls now get their layers from the " + choice + " cache."
	}
	con.showProfile(w, r, s, http.StatusOK, notice, nil)
}

type cachesData struct {
	Caches []cacheInfo
	Users  map[string]int
	// Form is the registration form as sent (kept on an error).
	Form cacheInfo
}

func (con *Console) caches(w http.ResponseWriter, r *http.Request, s *session) {
	con.showCaches(w, r, s, http.StatusOK, page{}, cacheInfo{})
}

func (con *Console) showCaches(w http.ResponseWriter, r *http.Request, s *session, status int, msg page, form cacheInfo) {
	p := con.pageFor(s, "caches", "Caches")
	p.Notice, p.Error, p.Problems = msg.Notice, msg.Error, msg.Problems
	d := cachesData{Form: form}
	var err error
	if d.Caches, err = con.listCaches(r, s.User); err != nil {
		con.failed(w, r, s, err)
		return
	}
	if d.Users, err = con.c.DB.CacheUsers(); err != nil {
		con.failed(w, r, s, err)
		return
	}
	p.Data = d
	con.render(w, r, status, "caches", p)
}

// withError fills a page's error from a failed call.
func withError(err error) page {
	p := page{Error: err.Error()}
	if ae, ok := err.(*apiError); ok {
		p.Problems = ae.Problems
	}
	return p
}

func cacheForm(r *http.Request) cacheInfo {
	return cacheInfo{
		Name:      strings.TrimSpace(r.PostFormValue("name")),
		Host:      strings.TrimSpace(r.PostFormValue("host")),
		ProbeHost: strings.TrimSpace(r.PostFormValue("probeHost")),
		Account:   strings.TrimSpace(r.PostFormValue("account")),
	}
}

func (con *Console) registerCache(w http.ResponseWriter, r *http.Request, s *session) {
	f := cacheForm(r)
	body := map[string]string{"name": f.Name, "host": f.Host}
	if f.ProbeHost != "" {
		body["probeHost"] = f.ProbeHost
	}
	if f.Account != "" {
		body["account"] = f.Account
	}
	if err := con.call(r, s.User, http.MethodPost, "/api/v0/content_caches", body, nil); err != nil {
		con.showCaches(w, r, s, statusOf(err), withError(err), f)
		return
	}
	con.stats.poke()
	con.showCaches(w, r, s, http.StatusCreated, page{Notice: "Registered the " + f.Name + " cache."}, cacheInfo{})
}

type cacheDetailData struct {
	Cache  cacheInfo
	Users  int
	Charts []chart
	// Latest is the last sample (nil before the first).
	Latest *sample
	// Since is the first sample's time.
	Since time.Time
}

func (con *Console) cacheDetail(w http.ResponseWriter, r *http.Request, s *session) {
	con.showCache(w, r, s, http.StatusOK, page{}, nil)
}

func (con *Console) showCache(w http.ResponseWriter, r *http.Request, s *session, status int, msg page, form *cacheInfo) {
	name := r.PathValue("name")
	var c cacheInfo
	if err := con.call(r, s.User, http.MethodGet, "/api/v0/content_caches/"+url.PathEscape(name), nil, &c); err != nil {
		con.failed(w, r, s, err)
		return
	}
	users, err := con.c.DB.CacheUsers()
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	p := con.pageFor(s, "caches", "Cache "+c.Name)
	p.Notice, p.Error, p.Problems = msg.Notice, msg.Error, msg.Problems
	d := cacheDetailData{Cache: c, Users: users[c.Name]}
	if form != nil {
		d.Cache.Host, d.Cache.ProbeHost, d.Cache.Account = form.Host, form.ProbeHost, form.Account
	}
	samples := con.stats.history(c.Name)
	if len(samples) > 0 {
		d.Latest, d.Since = &samples[len(samples)-1], samples[0].At
	}
	d.Charts = cacheCharts(samples, con.c.Now(), con.c.History)
	p.Data = d
	con.render(w, r, status, "cache", p)
}

func (con *Console) editCache(w http.ResponseWriter, r *http.Request, s *session) {
	f := cacheForm(r)
	name := r.PathValue("name")
	body := map[string]string{"host": f.Host, "probeHost": f.ProbeHost, "account": f.Account}
	if err := con.call(r, s.User, http.MethodPatch, "/api/v0/content_caches/"+url.PathEscape(name), body, nil); err != nil {
		con.showCache(w, r, s, statusOf(err), withError(err), &f)
		return
	}
	con.showCache(w, r, s, http.StatusOK, page{Notice: "Saved."}, nil)
}

func (con *Console) removeCache(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if err := con.call(r, s.User, http.MethodDelete, "/api/v0/content_caches/"+url.PathEscape(name), nil, nil); err != nil {
		con.showCaches(w, r, s, statusOf(err), withError(err), cacheInfo{})
		return
	}
	con.stats.forget(name)
	con.showCaches(w, r, s, http.StatusOK, page{Notice: "Removed the " + name + " cache; its users pull from the origin."}, cacheInfo{})
}
