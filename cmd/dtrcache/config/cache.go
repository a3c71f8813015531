package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"github.com/dtrcache/dtrcache/proxy/units"
	"gopkg.in/yaml.v3"
)

// Cache is the configuration of `dtrcache cache`.
type Cache struct {
	// Version is accepted for compatibility with registry configurations.
	Version string `yaml:"version"`
	// Name is the cache's name at the origin: the audience of its tokens.
	Name string `yaml:"name"`

	Log      Log            `yaml:"log"`
	HTTP     HTTP           `yaml:"http"`
	Storage  Storage        `yaml:"storage"`
	Redirect *Redirect      `yaml:"redirect"`
	Mirror   *Mirror        `yaml:"mirror"`
	Fill     Fill           `yaml:"fill"`
	Forward  *ForwardProxy  `yaml:"forward_proxy"`
	Shutdown units.Duration `yaml:"shutdown_grace"`
	// Drain is how long a stopping cache in redirect mode reports itself
	// not ready, still serving, until its origins have seen that (a 503
	// answered at /readyz, or a not-ready heartbeat acknowledged); 0
	// means DefaultDrain.
	Drain   units.Duration  `yaml:"shutdown_drain"`
	Middle  map[string][]Mw `yaml:"middleware"` // DTR's downstream middleware
	Proxy   *RegistryProxy  `yaml:"proxy"`      // distribution's proxy mode
	Ignored RegistryKeys    `yaml:",inline"`    // other registry keys, reported as ignored
	Unused  []string        `yaml:"-"`          // keys accepted but ignored
	Source  string          `yaml:"-"`          // the file read
}

// RegistryKeys are the top-level keys of a registry configuration that
// dtrcache accepts, so a DTR or distribution file works unchanged, and
// does not use (the command lists the ones set in a warning at start).
type RegistryKeys struct {
	Auth          yaml.Node `yaml:"auth"`
	Reporting     yaml.Node `yaml:"reporting"`
	Notifications yaml.Node `yaml:"notifications"`
	Redis         yaml.Node `yaml:"redis"`
	Health        yaml.Node `yaml:"health"`
	Compatibility yaml.Node `yaml:"compatibility"`
	Validation    yaml.Node `yaml:"validation"`
	Policy        yaml.Node `yaml:"policy"`
	Catalog       yaml.Node `yaml:"catalog"`
	Loglevel      yaml.Node `yaml:"loglevel"`
}

// set returns the keys of k the file set, in order.
func (k *RegistryKeys) set() []string {
	var out []string
	v, t := reflect.ValueOf(k).Elem(), reflect.TypeOf(*k)
	for i := 0; i < t.NumField(); i++ {
		if v.Field(i).Interface().(yaml.Node).Kind != 0 {
			out = append(out, t.Field(i).Tag.Get("yaml"))
		}
	}
	return out
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
	Root          string         `yaml:"root"`
	MaxSize       units.Size     `yaml:"max_size"`
	HighWatermark float64        `yaml:"high_watermark"`
	LowWatermark  float64        `yaml:"low_watermark"`
	BlobTTL       units.Duration `yaml:"blob_ttl"`
	MaxBlobSize   units.Size     `yaml:"max_blob_size"`
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
	// PasswordFrom is the file Normalize read the password from.
	PasswordFrom string `yaml:"-"`
}

// Redirect configures redirect mode.
type Redirect struct {
	Upstream   `yaml:",inline"`
	Keys       Keys     `yaml:"keys"`
	Issuer     string   `yaml:"issuer"`
	Audiences  []string `yaml:"audiences"`
	Downstream string   `yaml:"downstream_htpasswd"`
	// Heartbeat, if set, makes the cache announce itself to its origin
	// instead of waiting for probes (a cache the origin cannot reach).
	Heartbeat *Heartbeat `yaml:"heartbeat"`
}

// Heartbeat configures a cache's heartbeats to its origin.
type Heartbeat struct {
	// Origin is the origin's base URL; "" means the first of
	// redirect.upstreams.
	Origin string `yaml:"origin"`
	// Node is the URL users reach this node at, as registered at the
	// origin ("" for a cache of one node).
	Node string `yaml:"node"`
	// Interval between beats; 0 means DefaultHeartbeatInterval.
	Interval units.Duration `yaml:"interval"`
}

// The defaults of a cache's failover settings.
const (
	// DefaultDrain bounds how long a stopping cache waits for its origins
	// to stop redirecting to it (about two probe intervals and a half).
	DefaultDrain = 3 * time.Second
	// DefaultHeartbeatInterval is the time between two heartbeats.
	DefaultHeartbeatInterval = time.Second
)

// Keys says where the origin's public keys come from.
type Keys struct {
	JWKSURL string         `yaml:"jwks_url"`
	Files   []string       `yaml:"files"`
	Refresh units.Duration `yaml:"refresh"`
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
	// CheckRepository confirms with the upstream that stored content is in
	// the requested repository before serving it (cache.MirrorUpstream).
	// Unset means true for an upstream with credentials, false without.
	CheckRepository *bool `yaml:"check_repository"`
}

// ChecksRepository reports whether the mirror confirms repositories with
// this upstream: as set, else when it has credentials.
func (u *MirrorUpstream) ChecksRepository() bool {
	if u.CheckRepository != nil {
		return *u.CheckRepository
	}
	return u.Username != ""
}

// Fill tunes fills. Zero values (and an unset Prefetch) leave the choice
// to the cache's defaults (cache.DefaultFill, cache.DefaultPrefetch).
type Fill struct {
	Parallel  int        `yaml:"parallel"`
	ChunkSize units.Size `yaml:"chunk_size"`
	// StallTimeout aborts an upstream stream that delivers nothing for
	// this long (it is then resumed); 0 means the store's default.
	StallTimeout units.Duration `yaml:"stall_timeout"`
	// Prefetch is how many blobs are fetched at once in the background
	// once an image's manifest is known; 0 turns prefetching off.
	Prefetch *int `yaml:"prefetch"`
	// PrefetchWhileAwaited is how many prefetch fills run besides the ones
	// clients wait for (and the earliest blob of a manifest not yet
	// filled) while one of those has less than 75 % of its bytes; unset
	// means cache.DefaultPrefetchWhileAwaited (0), 0 none.
	PrefetchWhileAwaited *int `yaml:"prefetch_while_awaited"`
	// PrefetchHold is when that hold applies: "auto" (unset) unless the
	// cache's fills show each upstream connection is capped below the
	// link, "always" regardless.
	PrefetchHold string `yaml:"prefetch_hold"`
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
	// AuthTTL is how long a registry's yes is remembered (at most
	// forward.MaxAuthTTL; 0 means the forward proxy's default).
	AuthTTL units.Duration `yaml:"auth_cache_ttl"`
	// ManifestVouching lets a manifest the registry served to a client
	// authorize the blobs it lists for that client (forward.Options.
	// NoManifestVouching); nil means on.
	ManifestVouching *bool `yaml:"manifest_vouching"`
	// MaxLeafCerts bounds the cache of leaf certificates (0 means
	// ca.DefaultMaxLeaves).
	MaxLeafCerts int `yaml:"max_leaf_certs"`
	// IdleTimeout closes idle client connections and tunnels (0 means the
	// forward proxy's default).
	IdleTimeout units.Duration `yaml:"idle_timeout"`
	// BlobMirror, if set, is the office's mirror fleet that misses are
	// filled from (forward.Options.BlobMirror).
	BlobMirror *BlobMirror `yaml:"blob_mirror"`
}

// BlobMirror is where an HTTPS_PROXY node fills blobs from: the office's
// pull-through mirror, or the load balancer of its mirror fleet.
type BlobMirror struct {
	// URL is the mirror's base URL (http(s)://host[:port]).
	URL string `yaml:"url"`
	// CAs are PEM files trusted for the mirror, besides the system roots.
	CAs []string `yaml:"cas"`
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
	RemoteURL string         `yaml:"remoteurl"`
	Username  string         `yaml:"username"`
	Password  string         `yaml:"password"`
	TTL       units.Duration `yaml:"ttl"`
}

// The listen addresses of the cache command when the file sets none.
const (
	DefaultCacheAddr   = ":5000"
	DefaultForwardAddr = ":3128"
)

// LoadCache reads a cache configuration file. Environment and flag
// overrides are applied by the caller before Normalize.
func LoadCache(path string) (*Cache, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCache(data, path)
}

// ParseCache parses cache configuration YAML. A file that is not YAML
// returns no configuration; otherwise it returns the configuration with
// every good value, and the problems of the others (unknown keys, values
// that do not parse) as Problems, each naming its key and line, so the
// command can report them with those its checks find.
func ParseCache(data []byte, source string) (*Cache, error) {
	c := &Cache{Source: source}
	var p Problems
	if err := decodeStrict(data, c, source); err != nil && !errors.As(err, &p) {
		return nil, err
	}
	c.Unused = c.Ignored.set()
	c.Ignored = RegistryKeys{}
	return c, p.Err()
}

// Normalize folds the DTR downstream middleware and distribution's proxy
// section into redirect and mirror mode, moves single url keys into the
// upstream lists, reads password files, derives what the file leaves
// implicit (the cache's audience from http.host, a mirror upstream's
// hosts from its URL, the default upstream when there is only one, the
// log format from a registry "formatter"), and sets the defaults of the
// command's own settings (listen addresses, log level and format). It
// returns every problem it meets doing so, each naming its key.
//
// Normalize checks no value against the rules of the package that takes
// it (sizes, watermarks, forward proxy entries…), and fills none of their
// defaults: the command checks the normalised configuration with those
// packages' own checks, and a zero value means the package's default.
func (c *Cache) Normalize() error {
	var p Problems
	c.foldDTR(&p)
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = DefaultCacheAddr
	}
	c.Log.normalize(&p)
	if r := c.Redirect; r != nil {
		r.Upstream.normalize(&p, "redirect")
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
				p.Add("name", "required in redirect mode: the cache's name at the origin, which its tokens must carry (or set http.host)")
			} else {
				r.Audiences = []string{name}
			}
		}
	}
	if m := c.Mirror; m != nil {
		for i := range m.Upstreams {
			u := &m.Upstreams[i]
			u.Upstream.normalize(&p, fmt.Sprintf("mirror.upstreams[%d]", i))
			if len(u.Hosts) == 0 && len(u.Upstream.URLs) > 0 {
				if pu, err := url.Parse(u.Upstream.URLs[0]); err == nil {
					u.Hosts = []string{pu.Host}
				}
			}
		}
		if m.Default == "" && len(m.Upstreams) == 1 {
			m.Default = m.Upstreams[0].Name
		}
	}
	if f := c.Forward; f != nil && f.Addr == "" {
		f.Addr = DefaultForwardAddr
	}
	return p.Err()
}

// File is a file the configuration refers to, with its key, and how
// private it must be.
type File struct {
	Key, Path string
	Private   Privacy
}

// Privacy says what a file that group or others may read means.
type Privacy int

const (
	// Public files (certificates, CAs) may be read by anyone.
	Public Privacy = iota
	// Secret files (passwords, TLS keys) should not be: a warning.
	Secret
	// Signing files (the office CA's key, which can sign a certificate for
	// any name the office trusts) must not be: the command refuses them.
	Signing
)

// Files lists the files the configuration refers to, so the command can
// check them before serving and name the key of any that is missing.
func (c *Cache) Files() []File {
	var fs []File
	add := func(key, path string) {
		if path != "" {
			fs = append(fs, File{Key: key, Path: path})
		}
	}
	private := func(key, path string, p Privacy) {
		if path != "" {
			fs = append(fs, File{key, path, p})
		}
	}
	add("http.tls.certificate", c.HTTP.TLS.Certificate)
	private("http.tls.key", c.HTTP.TLS.Key, Secret)
	if r := c.Redirect; r != nil {
		private("redirect.password_file", r.PasswordFrom, Secret)
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
			private(fmt.Sprintf("mirror.upstreams[%d].password_file", i), u.PasswordFrom, Secret)
			for j, f := range u.CAs {
				add(fmt.Sprintf("mirror.upstreams[%d].cas[%d]", i, j), f)
			}
		}
	}
	if f := c.Forward; f != nil {
		if f.CADir != "" {
			add("forward_proxy.ca_dir", filepath.Join(f.CADir, ca.CertFile))
			private("forward_proxy.ca_dir", filepath.Join(f.CADir, ca.KeyFile), Signing)
		}
		for i, ca := range f.CAs {
			add(fmt.Sprintf("forward_proxy.cas[%d]", i), ca)
		}
		if m := f.BlobMirror; m != nil {
			for i, ca := range m.CAs {
				add(fmt.Sprintf("forward_proxy.blob_mirror.cas[%d]", i), ca)
			}
		}
	}
	return fs
}

// CheckFiles reports every referenced file that cannot be read, and every
// Signing file that group or others may read.
func CheckFiles(files []File) error {
	var p Problems
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			p.Add(f.Key, "%v", err)
			continue
		}
		fi, err := fh.Stat()
		fh.Close()
		if err == nil && f.Private == Signing && fi.Mode().Perm()&0o077 != 0 {
			p.Add(f.Key, "%s has mode %04o: group or others may read this signing key, which can sign a certificate for any name "+
				"the office trusts; chmod 600 %s", f.Path, fi.Mode().Perm(), f.Path)
		}
	}
	return p.Err()
}

// Exposed returns a warning for every Secret file that group or others
// may read, naming its key: the command logs them once at start.
func Exposed(files []File) []string {
	var out []string
	for _, f := range files {
		if f.Private != Secret {
			continue
		}
		if fi, err := os.Stat(f.Path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s: %s has mode %04o: group or others may read it; chmod 600 %s", f.Key, f.Path, fi.Mode().Perm(), f.Path))
		}
	}
	return out
}

// foldDTR maps the DTR downstream middleware and distribution's proxy
// section onto redirect and mirror mode.
func (c *Cache) foldDTR(p *Problems) {
	for i, mw := range c.Middle["registry"] {
		key := fmt.Sprintf("middleware.registry[%d]", i)
		if mw.Name != "downstream" {
			p.Add(key+".name", "unsupported middleware %q (dtrcache supports downstream)", mw.Name)
			continue
		}
		if c.Redirect != nil {
			p.Add(key, "both a downstream middleware and a redirect section: keep one")
			continue
		}
		if len(mw.Options.Upstreams) == 0 {
			p.Add(key+".options.upstreams", "at least one upstream is required")
		}
		c.Redirect = &Redirect{Upstream: Upstream{URLs: mw.Options.Upstreams, CAs: mw.Options.CAs}}
		if mw.Options.BlobTTL != "" {
			d, err := units.ParseDuration(mw.Options.BlobTTL)
			if err != nil {
				p.Add(key+".options.blobttl", "%v", err)
			} else if c.Storage.BlobTTL == 0 {
				c.Storage.BlobTTL = d
			}
		}
	}
	for k := range c.Middle {
		if k != "registry" {
			p.Add("middleware."+k, "unsupported middleware kind (dtrcache supports middleware.registry)")
		}
	}
	if px := c.Proxy; px != nil {
		if c.Mirror != nil {
			p.Add("proxy", "both proxy.remoteurl and a mirror section: keep one")
		} else {
			c.Mirror = &Mirror{Upstreams: []MirrorUpstream{{Name: "remote", Upstream: Upstream{URLs: []string{px.RemoteURL}, Username: px.Username, Password: px.Password}}}}
		}
	}
	if c.Storage.Root == "" {
		c.Storage.Root = c.Storage.Filesystem.RootDirectory
	}
}

// normalize fills the level and format: info, and the format a registry
// "formatter" names (text is console; json and logstash are json).
func (l *Log) normalize(p *Problems) {
	if l.Level == "" {
		l.Level = "info"
	}
	if l.Format == "" {
		switch l.Formatter {
		case "", "json", "logstash":
			l.Format = "json"
		case "text":
			l.Format = "console"
		default:
			p.Add("log.formatter", "unknown formatter %q", l.Formatter)
		}
	}
}

// normalize puts url first in the upstream list and replaces
// password_file by the password it holds.
func (u *Upstream) normalize(p *Problems, key string) {
	if u.URL != "" {
		u.URLs = append([]string{u.URL}, u.URLs...)
		u.URL = ""
	}
	u.Password = secret(u.Password, u.PasswordFile, key+".password", p)
	u.PasswordFrom, u.PasswordFile = u.PasswordFile, ""
}
