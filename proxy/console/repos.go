package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/dtrcache/dtrcache/proxy/regapi"
)

// Bounds of the repository pages.
const (
	maxCatalog     = 5000 // repositories listed
	maxTagsPerPage = 50   // tags described per page
	maxPlatforms   = 16   // platforms of an index described
	describeAtOnce = 4    // manifests read at once
	maxConfigBlob  = 1 << 20
)

// manifestAccept are the manifest types the console reads.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

type descriptor struct {
	MediaType    string    `json:"mediaType"`
	Digest       string    `json:"digest"`
	Size         int64     `json:"size"`
	ArtifactType string    `json:"artifactType"`
	Platform     *platform `json:"platform"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

func (p platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// image is one platform's image of a tag.
type image struct {
	Digest   string
	Platform string
	Config   descriptor
	Layers   []descriptor
	Size     int64
}

// tagInfo describes a tag.
type tagInfo struct {
	Tag, Digest, MediaType string
	Size                   int64
	Platforms              []string
	Images                 []image
	Err                    string
}

// getManifest reads a manifest through the origin as user.
func (con *Console) getManifest(r *http.Request, user, repo, ref string) (manifest, string, error) {
	a, err := con.do(r, user, http.MethodGet, "/v2/"+repo+"/manifests/"+url.PathEscape(ref), http.Header{"Accept": {manifestAccept}}, nil)
	if err != nil {
		return manifest{}, "", err
	}
	if a.status != http.StatusOK {
		return manifest{}, "", decodeError(a)
	}
	var m manifest
	if err := json.Unmarshal(a.body.Bytes(), &m); err != nil {
		return manifest{}, "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	if m.MediaType == "" {
		m.MediaType = a.header.Get("Content-Type")
	}
	return m, a.header.Get("Docker-Content-Digest"), nil
}

// describeImage reads an image manifest's platform from its config.
func (con *Console) describeImage(r *http.Request, user, repo string, m manifest, digest string, p *platform) image {
	img := image{Digest: digest, Layers: m.Layers}
	if m.Config != nil {
		img.Config = *m.Config
		img.Size = m.Config.Size
	}
	for _, l := range m.Layers {
		img.Size += l.Size
	}
	if p != nil {
		img.Platform = p.String()
		return img
	}
	if m.Config == nil {
		return img
	}
	a, err := con.do(r, user, http.MethodGet, "/v2/"+repo+"/blobs/"+m.Config.Digest, nil, nil)
	if err != nil || a.status != http.StatusOK || a.body.Len() > maxConfigBlob {
		return img
	}
	var cfg platform
	if json.Unmarshal(a.body.Bytes(), &cfg) == nil && cfg.OS != "" {
		img.Platform = cfg.String()
	}
	return img
}

// describeTag reads a tag's manifest (and an index's platform manifests).
func (con *Console) describeTag(r *http.Request, user, repo, tag string) tagInfo {
	t := tagInfo{Tag: tag}
	m, digest, err := con.getManifest(r, user, repo, tag)
	if err != nil {
		t.Err = err.Error()
		return t
	}
	t.Digest, t.MediaType = digest, m.MediaType
	if len(m.Manifests) == 0 {
		img := con.describeImage(r, user, repo, m, digest, nil)
		t.Images, t.Size = []image{img}, img.Size
		if img.Platform != "" {
			t.Platforms = []string{img.Platform}
		}
		return t
	}
	for i, d := range m.Manifests {
		if i >= maxPlatforms {
			t.Err = fmt.Sprintf("only the first %d platforms are shown", maxPlatforms)
			break
		}
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue // an attestation, not a platform
		}
		child, _, err := con.getManifest(r, user, repo, d.Digest)
		if err != nil {
			t.Err = err.Error()
			continue
		}
		img := con.describeImage(r, user, repo, child, d.Digest, d.Platform)
		t.Images = append(t.Images, img)
		t.Platforms = append(t.Platforms, img.Platform)
		t.Size += img.Size
	}
	return t
}

type reposData struct {
	Repositories []string
	Truncated    bool
}

func (con *Console) repositories(w http.ResponseWriter, r *http.Request, s *session) {
	var d reposData
	last := ""
	for len(d.Repositories) < maxCatalog {
		path := "/v2/_catalog" // the registry's own page size (n may exceed its limit)
		if last != "" {
			path += "?last=" + url.QueryEscape(last)
		}
		var page struct {
			Repositories []string `json:"repositories"`
		}
		a, err := con.do(r, s.User, http.MethodGet, path, nil, nil)
		if err == nil && a.status != http.StatusOK {
			err = decodeError(a)
		}
		if err == nil {
			err = json.Unmarshal(a.body.Bytes(), &page)
		}
		if err != nil {
			con.failed(w, r, s, err)
			return
		}
		d.Repositories = append(d.Repositories, page.Repositories...)
		// The origin filters each page of the backend's catalog, so a page
		// may be short (or empty) while more follow: the Link header says.
		if last = nextLast(a.header.Get("Link")); last == "" {
			break
		}
	}
	if len(d.Repositories) > maxCatalog {
		d.Repositories, d.Truncated = d.Repositories[:maxCatalog], true
	}
	p := con.pageFor(s, "repositories", "Repositories")
	p.Data = d
	con.render(w, r, http.StatusOK, "repositories", p)
}

// repository serves /console/repositories/{repo} (its tags) and
// /console/repositories/{repo}/-/tags/{tag} (one tag). "-" is no valid
// path component of a repository name, so the split is unambiguous.
func (con *Console) repository(w http.ResponseWriter, r *http.Request, s *session) {
	path := r.PathValue("path")
	repo, tag, isTag := strings.Cut(path, "/-/tags/")
	if !regapi.ValidName(repo) || isTag && tag == "" {
		con.errorPage(w, r, s, http.StatusNotFound, "No such repository.")
		return
	}
	if isTag {
		con.tagDetail(w, r, s, repo, tag)
		return
	}
	con.tagList(w, r, s, repo)
}

type tagsData struct {
	Repository string
	Tags       []tagInfo
	Page, More int
	Total      int
}

func (con *Console) tagList(w http.ResponseWriter, r *http.Request, s *session, repo string) {
	var list struct {
		Tags []string `json:"tags"`
	}
	a, err := con.do(r, s.User, http.MethodGet, "/v2/"+repo+"/tags/list", nil, nil)
	if err == nil && a.status != http.StatusOK {
		err = decodeError(a)
	}
	if err == nil {
		err = json.Unmarshal(a.body.Bytes(), &list)
	}
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	sort.Strings(list.Tags)
	d := tagsData{Repository: repo, Total: len(list.Tags)}
	fmt.Sscanf(r.URL.Query().Get("page"), "%d", &d.Page)
	d.Page = max(d.Page, 0)
	start := min(d.Page*maxTagsPerPage, len(list.Tags))
	end := min(start+maxTagsPerPage, len(list.Tags))
	if end < len(list.Tags) {
		d.More = d.Page + 1
	}
	d.Tags = make([]tagInfo, end-start)
	sem := make(chan struct{}, describeAtOnce)
	var wg sync.WaitGroup
	for i, tag := range list.Tags[start:end] {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.Tags[i] = con.describeTag(r, s.User, repo, tag)
		}()
	}
	wg.Wait()
	p := con.pageFor(s, "repositories", repo)
	p.Data = d
	con.render(w, r, http.StatusOK, "repository", p)
}

type tagDetailData struct {
	Repository string
	Tag        tagInfo
	Caches     []string
	// Blobs are the tag's blobs with where they are.
	Blobs []blobRow
	// Truncated: only the first maxPresenceBlobs blobs were looked up.
	Truncated bool
}

type blobRow struct {
	Digest, Kind, Platform string
	Size                   int64
	// In has one entry per cache of Caches.
	In []presence
}

func (con *Console) tagDetail(w http.ResponseWriter, r *http.Request, s *session, repo, tag string) {
	t := con.describeTag(r, s.User, repo, tag)
	if t.Digest == "" {
		con.errorPage(w, r, s, http.StatusNotFound, "No such tag: "+t.Err)
		return
	}
	d := tagDetailData{Repository: repo, Tag: t}
	seen := map[string]bool{}
	for _, img := range t.Images {
		add := func(desc descriptor, kind string) {
			if desc.Digest == "" || seen[desc.Digest] {
				return
			}
			seen[desc.Digest] = true
			d.Blobs = append(d.Blobs, blobRow{Digest: desc.Digest, Kind: kind, Platform: img.Platform, Size: desc.Size})
		}
		add(img.Config, "config")
		for _, l := range img.Layers {
			add(l, "layer")
		}
	}
	if len(d.Blobs) > maxPresenceBlobs {
		d.Blobs, d.Truncated = d.Blobs[:maxPresenceBlobs], true
	}
	caches, err := con.c.DB.Caches()
	if err != nil {
		con.failed(w, r, s, err)
		return
	}
	digests := make([]string, len(d.Blobs))
	for i, b := range d.Blobs {
		digests[i] = b.Digest
	}
	found := con.presence(r.Context(), s.User, repo, digests, caches)
	for _, c := range caches {
		d.Caches = append(d.Caches, c.Name)
	}
	for i := range d.Blobs {
		for _, c := range caches {
			d.Blobs[i].In = append(d.Blobs[i].In, found[c.Name][d.Blobs[i].Digest])
		}
	}
	p := con.pageFor(s, "repositories", repo+":"+tag)
	p.Data = d
	con.render(w, r, http.StatusOK, "tag", p)
}

// nextLast returns the last parameter of a catalog's next-page Link
// header ("" without one).
func nextLast(link string) string {
	start, end := strings.Index(link, "<"), strings.Index(link, ">")
	if start < 0 || end < start {
		return ""
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil {
		return ""
	}
	return u.Query().Get("last")
}
