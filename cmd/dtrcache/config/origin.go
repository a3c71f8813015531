package config

import (
	"fmt"
	"net"
	"net/url"
	"time"
)

// Origin is the configuration of `dtrcache origin`.
type Origin struct {
	Log      Log      `yaml:"log"`
	HTTP     HTTP     `yaml:"http"`
	Backend  Backend  `yaml:"backend"`
	Auth     Auth     `yaml:"auth"`
	Policy   string   `yaml:"policy"`
	DataDir  string   `yaml:"data_dir"`
	Keys     KeysDir  `yaml:"keys"`
	Caches   Probes   `yaml:"caches"`
	Shutdown Duration `yaml:"shutdown_grace"`
}

// Backend is the registry behind the origin.
type Backend struct {
	URL          string   `yaml:"url"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	CAs          []string `yaml:"cas"`
}

// Auth configures login.
type Auth struct {
	Htpasswd string `yaml:"htpasswd"`
	Realm    string `yaml:"realm"`
}

// KeysDir configures token signing.
type KeysDir struct {
	Dir      string   `yaml:"dir"`
	Issuer   string   `yaml:"issuer"`
	TokenTTL Duration `yaml:"token_ttl"`
	Reload   Duration `yaml:"reload"`
	// Generate creates a key at start when the directory has none (for
	// development stacks; production keys are made with `dtrcache keys
	// generate` and distributed deliberately).
	Generate bool `yaml:"generate"`
}

// Probes configures cache health checks.
type Probes struct {
	HealthInterval Duration `yaml:"health_interval"`
	HealthTimeout  Duration `yaml:"health_timeout"`
	CAs            []string `yaml:"cas"`
	// PrefetchHints tells a user's cache the blobs of the image manifests
	// the user GETs, so it starts filling them at once. Unset means true.
	PrefetchHints *bool `yaml:"prefetch_hints"`
}

// DefaultOriginAddr is where the origin listens by default.
const DefaultOriginAddr = ":5443"

// LoadOrigin reads an origin configuration file.
func LoadOrigin(path string) (*Origin, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseOrigin(data, path)
}

// ParseOrigin parses origin configuration YAML (strict keys).
func ParseOrigin(data []byte, source string) (*Origin, error) {
	o := &Origin{}
	if err := decodeStrict(data, o, source); err != nil {
		return nil, err
	}
	return o, nil
}

// Validate checks the configuration and fills defaults, naming the key of
// every problem.
func (o *Origin) Validate() error {
	var p Problems
	if o.HTTP.Addr == "" {
		o.HTTP.Addr = DefaultOriginAddr
	}
	if _, _, err := net.SplitHostPort(o.HTTP.Addr); err != nil {
		p.add("http.addr", "invalid listen address %q", o.HTTP.Addr)
	}
	if (o.HTTP.TLS.Certificate == "") != (o.HTTP.TLS.Key == "") {
		p.add("http.tls", "set both certificate and key")
	}
	c := Cache{Log: o.Log}
	c.validateLog(&p)
	o.Log = c.Log
	if o.Backend.URL == "" {
		p.add("backend.url", "required")
	} else if u, err := url.Parse(o.Backend.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("backend.url", "invalid URL %q (want http(s)://host[:port])", o.Backend.URL)
	}
	o.Backend.Password = secret(o.Backend.Password, o.Backend.PasswordFile, "backend.password", &p)
	o.Backend.PasswordFile = ""
	if o.Backend.Password != "" && o.Backend.Username == "" {
		p.add("backend.username", "required with a password")
	}
	if o.Auth.Htpasswd == "" {
		p.add("auth.htpasswd", "required (an htpasswd file of bcrypt hashes)")
	}
	if o.Auth.Realm == "" {
		o.Auth.Realm = "dtrcache"
	}
	if o.Policy == "" {
		p.add("policy", "required (the repository access rules file)")
	}
	if o.DataDir == "" {
		p.add("data_dir", "required (where caches and user settings are stored)")
	}
	if o.Keys.Dir == "" {
		p.add("keys.dir", "required (create a key with `dtrcache keys generate --dir DIR`)")
	}
	if o.Keys.TokenTTL == 0 {
		o.Keys.TokenTTL = Duration(5 * time.Minute)
	}
	if o.Keys.TokenTTL.D() < 10*time.Second || o.Keys.TokenTTL.D() > time.Hour {
		p.add("keys.token_ttl", "between 10s and 1h, got %s", o.Keys.TokenTTL.D())
	}
	if o.Keys.Reload == 0 {
		o.Keys.Reload = Duration(30 * time.Second)
	}
	if o.Caches.HealthInterval == 0 {
		o.Caches.HealthInterval = Duration(10 * time.Second)
	}
	if o.Caches.HealthTimeout == 0 {
		o.Caches.HealthTimeout = Duration(2 * time.Second)
	}
	if o.Caches.PrefetchHints == nil {
		t := true
		o.Caches.PrefetchHints = &t
	}
	if o.Shutdown == 0 {
		o.Shutdown = Duration(30 * time.Second)
	}
	return p.err()
}

// Files lists the files the configuration refers to.
func (o *Origin) Files() []File {
	var fs []File
	add := func(key, path string) {
		if path != "" {
			fs = append(fs, File{key, path})
		}
	}
	add("http.tls.certificate", o.HTTP.TLS.Certificate)
	add("http.tls.key", o.HTTP.TLS.Key)
	add("auth.htpasswd", o.Auth.Htpasswd)
	add("policy", o.Policy)
	for i, ca := range o.Backend.CAs {
		add(fmt.Sprintf("backend.cas[%d]", i), ca)
	}
	for i, ca := range o.Caches.CAs {
		add(fmt.Sprintf("caches.cas[%d]", i), ca)
	}
	return fs
}
