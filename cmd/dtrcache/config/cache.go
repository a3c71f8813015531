package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/forward"
	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"gopkg.in/yaml.v3"
)

// Cache is the configuration of `dtrcache cache`.
type Cache struct {
	// Version is accepted for compatibility with registry configurations.
	Version string `yaml:"version"`
	// Name is the cache's name at the origin: the audience of its tokens.
	Name string `yaml:"name"`

	Log      Log             `yaml:"log"`
	HTTP     HTTP            `yaml:"http"`
	Storage  Storage         `yaml:"storage"`
	Redirect *Redirect       `yaml:"redirect"`
	Mirror   *Mirror         `yaml:"mirror"`
	Fill     Fill            `yaml:"fill"`
	Forward  *ForwardProxy   `yaml:"forward_proxy"`
	Shutdown Duration        `yaml:"shutdown_grace"`
	Middle   map[string][]Mw `yaml:"middleware"` // DTR's downstream middleware
	Proxy    *RegistryProxy  `yaml:"proxy"`      // distribution's proxy mode
	Ignored  map[string]any  `yaml:",inline"`    // other registry keys, reported as ignored
	Unused   []string        `yaml:"-"`          // keys accepted but ignored
	Source   string          `yaml:"-"`          // the file read
}

// Log configures logging.
type Log struct {
	Level     string `yaml:"level"`     // debug, info, warn, error
	Format    string `yaml:"format"`    // json or console
	Formatter string `yaml:"formatter"` // registry spelling: text, json, logstash
	AccessLog struct {
		Disabled bool `yaml:"disabled"`
	} `yaml:"accesslog"`
	Fields map[string]any `yaml:"fields"`
}

// HTTP is the listener (the registry configuration's shape).
type HTTP struct {
	Addr   string `yaml:"addr"`
	Host   string `yaml:"host"`
	Prefix string `yaml:"prefix"`
	Secret string `yaml:"secret"`
	TLS    TLS    `yaml:"tls"`
	Debug  struct {
		Addr string `yaml:"addr"`
	} `yaml:"debug"`
	Headers map[string][]string `yaml:"headers"`
}

// TLS is a certificate and key pair.
type TLS struct {
	Certificate string   `yaml:"certificate"`
	Key         string   `yaml:"key"`
	ClientCAs   []string `yaml:"clientcas"`
}

// Storage configures the blob store. The filesystem/delete/maintenance
// keys are the registry configuration's.
type Storage struct {
	Root          string   `yaml:"root"`
	MaxSize       Size     `yaml:"max_size"`
	HighWatermark float64  `yaml:"high_watermark"`
	LowWatermark  float64  `yaml:"low_watermark"`
	BlobTTL       Duration `yaml:"blob_ttl"`
	MaxBlobSize   Size     `yaml:"max_blob_size"`
	Filesystem    struct {
		RootDirectory string `yaml:"rootdirectory"`
	} `yaml:"filesystem"`
	Delete struct {
		Enabled bool `yaml:"enabled"`
	} `yaml:"delete"`
	Maintenance yaml.Node `yaml:"maintenance"`
	Cache       yaml.Node `yaml:"cache"`
	Redirect    yaml.Node `yaml:"redirect"`
}

// Upstream is how to reach one upstream registry.
type Upstream struct {
	URLs         []string `yaml:"upstreams"`
	URL          string   `yaml:"url"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	CAs          []string `yaml:"cas"`
}

// Redirect configures redirect mode.
type Redirect struct {
	Upstream   `yaml:",inline"`
	Keys       Keys     `yaml:"keys"`
	Issuer     string   `yaml:"issuer"`
	Audiences  []string `yaml:"audiences"`
	Downstream string   `yaml:"downstream_htpasswd"`
}

// Keys says where the origin's public keys come from.
type Keys struct {
	JWKSURL string   `yaml:"jwks_url"`
	Files   []string `yaml:"files"`
	Refresh Duration `yaml:"refresh"`
}

// Mirror configures pull-through mirror mode.
type Mirror struct {
	Default   string           `yaml:"default"`
	Upstreams []MirrorUpstream `yaml:"upstreams"`
}

// MirrorUpstream is one mirrored registry.
type MirrorUpstream struct {
	Name     string   `yaml:"name"`
	Hosts    []string `yaml:"hosts"`
	Upstream `yaml:",inline"`
}

// Fill tunes fills.
type Fill struct {
	Parallel  int  `yaml:"parallel"`
	ChunkSize Size `yaml:"chunk_size"`
	// Prefetch is how many blobs are fetched at once in the background
	// once an image's manifest is known; 0 turns prefetching off. Unset
	// means DefaultPrefetch.
	Prefetch *int `yaml:"prefetch"`
}

// ForwardProxy configures the HTTPS_PROXY face (package forward).
type ForwardProxy struct {
	// Addr is the proxy's listen address (default :3128).
	Addr string `yaml:"addr"`
	// CADir holds the office CA made by `dtrcache ca init`.
	CADir string `yaml:"ca_dir"`
	// Intercept lists the registry hosts to intercept ("host" or
	// "host:port"); Tunnel the hosts to tunnel untouched.
	Intercept []string `yaml:"intercept"`
	Tunnel    []string `yaml:"tunnel"`
	// Clients are the client CIDRs allowed (default: loopback and private
	// networks).
	Clients []string `yaml:"clients"`
	// Ports are the destination ports allowed for entries without a port
	// (default 443).
	Ports []int `yaml:"ports"`
	// AllowPriv are destination CIDRs allowed although loopback, private
	// or link-local.
	AllowPriv []string `yaml:"allow_private"`
	// Hosts is the static host map (name → address[:port]).
	Hosts map[string]string `yaml:"hosts"`
	// CAs are PEM files trusted for registries, besides the system roots.
	CAs []string `yaml:"cas"`
	// AuthTTL is how long a registry's yes is remembered (≤ 60s, default 60s).
	AuthTTL Duration `yaml:"auth_cache_ttl"`
	// MaxLeafCerts bounds the cache of leaf certificates (default 1000).
	MaxLeafCerts int `yaml:"max_leaf_certs"`
	// IdleTimeout closes idle client connections and tunnels (default 2m).
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// Mw is one registry middleware entry.
type Mw struct {
	Name    string    `yaml:"name"`
	Options MwOptions `yaml:"options"`
}

// MwOptions are the options of DTR's downstream middleware.
type MwOptions struct {
	BlobTTL   string   `yaml:"blobttl"`
	Upstreams []string `yaml:"upstreams"`
	CAs       []string `yaml:"cas"`
}

// RegistryProxy is distribution's proxy (pull-through) section.
type RegistryProxy struct {
	RemoteURL string   `yaml:"remoteurl"`
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"`
	TTL       Duration `yaml:"ttl"`
}

// Cache defaults.
const (
	DefaultCacheAddr = ":5000"
	DefaultParallel  = 4
	DefaultChunk     = 4 << 20
	DefaultPrefetch  = 4
)

// registryKeys are top-level keys of a registry configuration that dtrcache
// accepts and ignores.
var registryKeys = []string{"auth", "reporting", "notifications", "redis", "health", "compatibility", "validation", "policy", "catalog", "loglevel"}

// LoadCache reads a cache configuration file. Environment and flag
// overrides are applied by the caller before Validate.
func LoadCache(path string) (*Cache, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCache(data, path)
}

// ParseCache parses cache configuration YAML.
func ParseCache(data []byte, source string) (*Cache, error) {
	c := &Cache{Source: source}
	if err := decodeStrict(data, c, source); err != nil {
		return nil, err
	}
	for k := range c.Ignored {
		known := false
		for _, r := range registryKeys {
			known = known || k == r
		}
		if !known {
			return nil, fmt.Errorf("config %s: unknown key %q", source, k)
		}
		c.Unused = append(c.Unused, k)
	}
	c.Ignored = nil
	return c, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62})$`)

// Validate checks the configuration, folds the DTR and proxy-mode shapes
// into the native one, and fills defaults. It returns every problem found,
// each naming its key.
func (c *Cache) Validate() error {
	var p Problems
	c.foldDTR(&p)
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = DefaultCacheAddr
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		p.add("http.addr", "invalid listen address %q (want host:port)", c.HTTP.Addr)
	}
	if (c.HTTP.TLS.Certificate == "") != (c.HTTP.TLS.Key == "") {
		p.add("http.tls", "set both certificate and key")
	}
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		p.add("name", "invalid cache name %q (lower-case letters, digits, '.', '_', '-')", c.Name)
	}
	c.validateLog(&p)
	c.validateStorage(&p)
	if c.Redirect == nil && c.Mirror == nil && c.Forward == nil {
		p.add("redirect", "configure at least one of redirect, mirror or forward_proxy (or a DTR downstream middleware)")
	}
	if r := c.Redirect; r != nil {
		checkUpstream(&p, "redirect", &r.Upstream)
		if r.Keys.JWKSURL != "" {
			checkURL(&p, "redirect.keys.jwks_url", r.Keys.JWKSURL)
		}
		if len(r.Audiences) == 0 {
			// Tokens must name this cache. Without a name, the host name of
			// http.host is the name (a DTR configuration has only that):
			// register the cache at the origin under it.
			name := c.Name
			if name == "" && c.HTTP.Host != "" {
				if u, err := url.Parse(c.HTTP.Host); err == nil {
					name = strings.ToLower(u.Hostname())
				}
			}
			if name == "" {
				p.add("name", "required in redirect mode: the cache's name at the origin, which its tokens must carry (or set http.host)")
			} else {
				r.Audiences = []string{name}
			}
		}
	}
	if m := c.Mirror; m != nil {
		if len(m.Upstreams) == 0 {
			p.add("mirror.upstreams", "at least one upstream is required")
		}
		names := map[string]bool{}
		for i := range m.Upstreams {
			u := &m.Upstreams[i]
			key := fmt.Sprintf("mirror.upstreams[%d]", i)
			if !nameRE.MatchString(u.Name) {
				p.add(key+".name", "invalid or missing name %q", u.Name)
			}
			if names[u.Name] {
				p.add(key+".name", "duplicate name %q", u.Name)
			}
			names[u.Name] = true
			checkUpstream(&p, key, &u.Upstream)
			if len(u.Hosts) == 0 && len(u.Upstream.URLs) > 0 {
				if pu, err := url.Parse(u.Upstream.URLs[0]); err == nil {
					u.Hosts = []string{pu.Host}
				}
			}
		}
		if m.Default == "" && len(m.Upstreams) == 1 {
			m.Default = m.Upstreams[0].Name
		}
		if m.Default != "" && !names[m.Default] {
			p.add("mirror.default", "no upstream named %q", m.Default)
		}
	}
	if c.Fill.Parallel == 0 {
		c.Fill.Parallel = DefaultParallel
	}
	if c.Fill.Parallel < 1 || c.Fill.Parallel > 64 {
		p.add("fill.parallel", "must be between 1 and 64, got %d", c.Fill.Parallel)
	}
	if c.Fill.ChunkSize == 0 {
		c.Fill.ChunkSize = DefaultChunk
	}
	if c.Fill.Prefetch == nil {
		n := DefaultPrefetch
		c.Fill.Prefetch = &n
	}
	if *c.Fill.Prefetch < 0 || *c.Fill.Prefetch > 64 {
		p.add("fill.prefetch", "must be between 0 (off) and 64, got %d", *c.Fill.Prefetch)
	}
	if c.Fill.ChunkSize < 64<<10 {
		p.add("fill.chunk_size", "must be at least 64KiB, got %d bytes", c.Fill.ChunkSize)
	}
	if c.Shutdown == 0 {
		c.Shutdown = Duration(30 * time.Second)
	}
	if c.Forward != nil {
		c.Forward.validate(&p)
	}
	return p.err()
}

// File is a file the configuration refers to, with its key.
type File struct{ Key, Path string }

// Files lists the files the configuration refers to, so the command can
// check them before serving and name the key of any that is missing.
func (c *Cache) Files() []File {
	var fs []File
	add := func(key, path string) {
		if path != "" {
			fs = append(fs, File{key, path})
		}
	}
	add("http.tls.certificate", c.HTTP.TLS.Certificate)
	add("http.tls.key", c.HTTP.TLS.Key)
	if r := c.Redirect; r != nil {
		for i, f := range r.Keys.Files {
			add(fmt.Sprintf("redirect.keys.files[%d]", i), f)
		}
		for i, f := range r.CAs {
			add(fmt.Sprintf("redirect.cas[%d]", i), f)
		}
		add("redirect.downstream_htpasswd", r.Downstream)
	}
	if m := c.Mirror; m != nil {
		for i, u := range m.Upstreams {
			for j, f := range u.CAs {
				add(fmt.Sprintf("mirror.upstreams[%d].cas[%d]", i, j), f)
			}
		}
	}
	if f := c.Forward; f != nil {
		if f.CADir != "" {
			add("forward_proxy.ca_dir", filepath.Join(f.CADir, ca.CertFile))
			add("forward_proxy.ca_dir", filepath.Join(f.CADir, ca.KeyFile))
		}
		for i, ca := range f.CAs {
			add(fmt.Sprintf("forward_proxy.cas[%d]", i), ca)
		}
	}
	return fs
}

// CheckFiles reports every referenced file that cannot be read.
func CheckFiles(files []File) error {
	var p Problems
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			p.add(f.Key, "%v", err)
			continue
		}
		fh.Close()
	}
	return p.err()
}

// foldDTR maps the DTR downstream middleware and distribution's proxy
// section onto redirect and mirror mode.
func (c *Cache) foldDTR(p *Problems) {
	for i, mw := range c.Middle["registry"] {
		key := fmt.Sprintf("middleware.registry[%d]", i)
		if mw.Name != "downstream" {
			p.add(key+".name", "unsupported middleware %q (dtrcache supports downstream)", mw.Name)
			continue
		}
		if c.Redirect != nil {
			p.add(key, "both a downstream middleware and a redirect section: keep one")
			continue
		}
		if len(mw.Options.Upstreams) == 0 {
			p.add(key+".options.upstreams", "at least one upstream is required")
		}
		c.Redirect = &Redirect{Upstream: Upstream{URLs: mw.Options.Upstreams, CAs: mw.Options.CAs}}
		if mw.Options.BlobTTL != "" {
			d, err := ParseDuration(mw.Options.BlobTTL)
			if err != nil {
				p.add(key+".options.blobttl", "%v", err)
			} else if c.Storage.BlobTTL == 0 {
				c.Storage.BlobTTL = d
			}
		}
	}
	for k := range c.Middle {
		if k != "registry" {
			p.add("middleware."+k, "unsupported middleware kind (dtrcache supports middleware.registry)")
		}
	}
	if px := c.Proxy; px != nil {
		if c.Mirror != nil {
			p.add("proxy", "both proxy.remoteurl and a mirror section: keep one")
		} else {
			c.Mirror = &Mirror{Upstreams: []MirrorUpstream{{Name: "remote", Upstream: Upstream{URLs: []string{px.RemoteURL}, Username: px.Username, Password: px.Password}}}}
		}
	}
	if c.Storage.Root == "" {
		c.Storage.Root = c.Storage.Filesystem.RootDirectory
	}
}

func (c *Cache) validateLog(p *Problems) {
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "unknown level %q (debug, info, warn, error)", c.Log.Level)
	}
	if c.Log.Format == "" {
		switch c.Log.Formatter {
		case "", "json", "logstash":
			c.Log.Format = "json"
		case "text":
			c.Log.Format = "console"
		default:
			p.add("log.formatter", "unknown formatter %q", c.Log.Formatter)
		}
	}
	if c.Log.Format != "json" && c.Log.Format != "console" && c.Log.Format != "" {
		p.add("log.format", "unknown format %q (json or console)", c.Log.Format)
	}
}

func (c *Cache) validateStorage(p *Problems) {
	s := &c.Storage
	if s.Root == "" {
		p.add("storage.root", "required (or storage.filesystem.rootdirectory)")
	}
	if s.HighWatermark == 0 {
		s.HighWatermark = 0.95
	}
	if s.LowWatermark == 0 {
		s.LowWatermark = 0.85
	}
	if s.HighWatermark <= 0 || s.HighWatermark > 1 {
		p.add("storage.high_watermark", "must be in (0, 1], got %v", s.HighWatermark)
	}
	if s.LowWatermark <= 0 || s.LowWatermark >= s.HighWatermark {
		p.add("storage.low_watermark", "must be in (0, high_watermark), got %v", s.LowWatermark)
	}
	if s.MaxSize != 0 && s.MaxSize < 1<<20 {
		p.add("storage.max_size", "must be at least 1MiB, got %d bytes", s.MaxSize)
	}
}

func checkUpstream(p *Problems, key string, u *Upstream) {
	if u.URL != "" {
		u.URLs = append([]string{u.URL}, u.URLs...)
		u.URL = ""
	}
	if len(u.URLs) == 0 {
		p.add(key+".upstreams", "at least one upstream URL is required")
	}
	for i, raw := range u.URLs {
		checkURL(p, fmt.Sprintf("%s.upstreams[%d]", key, i), raw)
	}
	u.Password = secret(u.Password, u.PasswordFile, key+".password", p)
	u.PasswordFile = ""
	if u.Password != "" && u.Username == "" {
		p.add(key+".username", "required with a password")
	}
}

func checkURL(p *Problems, key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(u.Host, " \t") {
		p.add(key, "invalid URL %q (want http(s)://host[:port])", raw)
	}
}

func (f *ForwardProxy) validate(p *Problems) {
	const key = "forward_proxy"
	if f.Addr == "" {
		f.Addr = ":3128"
	}
	if _, _, err := net.SplitHostPort(f.Addr); err != nil {
		p.add(key+".addr", "invalid listen address %q", f.Addr)
	}
	if f.CADir == "" {
		p.add(key+".ca_dir", "required (create the CA with `dtrcache ca init --dir DIR`)")
	}
	if len(f.Intercept) == 0 {
		p.add(key+".intercept", "list the registry hosts to cache")
	}
	listed := map[string]string{}
	for _, l := range []struct {
		name    string
		entries []string
	}{{"intercept", f.Intercept}, {"tunnel", f.Tunnel}} {
		for i, e := range l.entries {
			host, _, err := forward.ParseHostPort(e, -1)
			if err != nil {
				p.add(fmt.Sprintf("%s.%s[%d]", key, l.name, i), "invalid entry %q (want host or host:port)", e)
				continue
			}
			if other, ok := listed[host]; ok && other != l.name {
				p.add(fmt.Sprintf("%s.%s[%d]", key, l.name, i), "%s is also in %s.%s", host, key, other)
			}
			listed[host] = l.name
		}
	}
	if len(f.Ports) == 0 {
		f.Ports = []int{443}
	}
	for i, port := range f.Ports {
		if port < 1 || port > 65535 {
			p.add(fmt.Sprintf("%s.ports[%d]", key, i), "invalid port %d", port)
		}
	}
	for _, l := range []struct {
		name  string
		cidrs []string
	}{{"clients", f.Clients}, {"allow_private", f.AllowPriv}} {
		for i, c := range l.cidrs {
			if _, err := netip.ParsePrefix(c); err != nil {
				if a, err := netip.ParseAddr(c); err != nil || a.Zone() != "" {
					p.add(fmt.Sprintf("%s.%s[%d]", key, l.name, i), "invalid address or CIDR %q", c)
				}
			}
		}
	}
	for k, v := range f.Hosts {
		if _, _, err := forward.ParseHostPort(k, -1); err != nil {
			p.add(fmt.Sprintf("%s.hosts[%s]", key, k), "invalid host name %q", k)
		}
		if _, _, err := forward.ParseHostPort(v, -1); err != nil {
			p.add(fmt.Sprintf("%s.hosts[%s]", key, k), "invalid address %q (want ip, ip:port, name or name:port)", v)
		}
	}
	if f.AuthTTL == 0 {
		f.AuthTTL = Duration(forward.MaxAuthTTL)
	}
	if f.AuthTTL.D() < 0 || f.AuthTTL.D() > forward.MaxAuthTTL {
		p.add(key+".auth_cache_ttl", "must be between 0 and %s, got %s", forward.MaxAuthTTL, f.AuthTTL.D())
	}
	if f.MaxLeafCerts == 0 {
		f.MaxLeafCerts = 1000
	}
	if f.MaxLeafCerts < 1 {
		p.add(key+".max_leaf_certs", "must be at least 1, got %d", f.MaxLeafCerts)
	}
	if f.IdleTimeout == 0 {
		f.IdleTimeout = Duration(2 * time.Minute)
	}
	if f.IdleTimeout.D() < time.Second {
		p.add(key+".idle_timeout", "must be at least 1s, got %s", f.IdleTimeout.D())
	}
}
