package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/dtrcache/dtrcache/proxy/units"
)

// Origin is the configuration of `dtrcache origin`.
type Origin struct {
	Log      Log            `yaml:"log"`
	HTTP     HTTP           `yaml:"http"`
	Backend  Backend        `yaml:"backend"`
	Auth     Auth           `yaml:"auth"`
	Policy   string         `yaml:"policy"`
	DataDir  string         `yaml:"data_dir"`
	State    State          `yaml:"state"`
	Keys     KeysDir        `yaml:"keys"`
	Caches   Probes         `yaml:"caches"`
	Policies Policies       `yaml:"policies"`
	Console  Console        `yaml:"console"`
	Events   Events         `yaml:"events"`
	Shutdown units.Duration `yaml:"shutdown_grace"`
}

// Policies configures promotion and mirroring policies and their jobs.
type Policies struct {
	// File is a policy file loaded at start (GitOps): the policies it
	// declares are kept exactly as written; the API cannot change them.
	File string `yaml:"file"`
	// Workers is how many jobs this origin runs at once (0: 4).
	Workers int `yaml:"workers"`
	// Concurrency is how many blobs one copy moves at once (0: 4).
	Concurrency int `yaml:"concurrency"`
	// Bandwidth caps each copy's bytes per second (0: no cap).
	Bandwidth units.Size `yaml:"bandwidth"`
	// MaxAttempts bounds the runs of a job that fails transiently (0: 10).
	MaxAttempts int `yaml:"max_attempts"`
	// Retention is how long finished jobs are kept (0: 720h).
	Retention units.Duration `yaml:"retention"`
	// ClaimTTL is how long a running job's claim outlives the origin
	// replica that holds it (0: 15s): after a replica dies, another takes
	// its running jobs over once this passes.
	ClaimTTL units.Duration `yaml:"claim_ttl"`
	// AllowedRemotes, if set, are the only remote registries mirroring
	// policies may name (host, host:port or *.domain).
	AllowedRemotes []string `yaml:"allowed_remotes"`
	// AllowPrivate are CIDRs of loopback, private or link-local addresses
	// remote registries may have (refused otherwise).
	AllowPrivate []string `yaml:"allow_private"`
	// SecretKey is the file of the key that seals remote passwords in the
	// state store (default <data_dir>/secrets.key, made if missing).
	SecretKey string `yaml:"secret_key"`
	// Timezone is where tag templates tell the time (default UTC).
	Timezone string `yaml:"timezone"`
}

// Backend is the registry behind the origin.
type Backend struct {
	URL          string   `yaml:"url"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	CAs          []string `yaml:"cas"`
	// PasswordFrom is the file Normalize read the password from.
	PasswordFrom string `yaml:"-"`
}

// Auth configures login.
type Auth struct {
	Htpasswd string `yaml:"htpasswd"`
	// Realm is the Basic auth realm; "" means the origin's default.
	Realm string `yaml:"realm"`
}

// KeysDir configures token signing.
type KeysDir struct {
	Dir    string `yaml:"dir"`
	Issuer string `yaml:"issuer"`
	// TokenTTL is the lifetime of redirect tokens; 0 means
	// policy.DefaultTokenTTL.
	TokenTTL units.Duration `yaml:"token_ttl"`
	// Reload is how often the key directory is read again (the command's
	// own loop; DefaultKeyReload when unset).
	Reload units.Duration `yaml:"reload"`
	// Generate creates a key at start when the directory has none (for
	// development stacks; production keys are made with `dtrcache keys
	// generate` and distributed deliberately).
	Generate bool `yaml:"generate"`
}

// Probes configures cache health checks. Zero durations mean the
// prober's defaults (origin.Prober).
type Probes struct {
	HealthInterval units.Duration `yaml:"health_interval"`
	HealthTimeout  units.Duration `yaml:"health_timeout"`
	// HealthRise is how many good checks in a row bring a node that was
	// down back; HealthFall how many timeouts or errors in a row take it
	// down (a refused connection, a 503 or two missed heartbeats do at
	// once). 0 means the prober's defaults.
	HealthRise int      `yaml:"health_rise"`
	HealthFall int      `yaml:"health_fall"`
	CAs        []string `yaml:"cas"`
	// PrefetchHints tells a user's cache the blobs of the image manifests
	// the user GETs, so it starts filling them at once. Unset means true.
	PrefetchHints *bool `yaml:"prefetch_hints"`
}

// The defaults of the origin command's own settings.
const (
	// DefaultOriginAddr is where the origin listens by default.
	DefaultOriginAddr = ":5443"
	// DefaultKeyReload is how often the key directory is read again.
	DefaultKeyReload = 30 * time.Second
)

// LoadOrigin reads an origin configuration file.
func LoadOrigin(path string) (*Origin, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseOrigin(data, path)
}

// ParseOrigin parses origin configuration YAML (strict keys). Like
// ParseCache it returns the good values together with the Problems of
// the others; a file that is not YAML returns no configuration.
func ParseOrigin(data []byte, source string) (*Origin, error) {
	o := &Origin{}
	var p Problems
	if err := decodeStrict(data, o, source); err != nil && !errors.As(err, &p) {
		return nil, err
	}
	return o, p.Err()
}

// Normalize replaces password_file by the password it holds and sets the
// defaults of the command's own settings (listen address, log, key
// reload, prefetch hints on). It returns every problem it meets doing so,
// each naming its key. Like Cache.Normalize it checks no value against
// another package's rules and fills none of their defaults.
func (o *Origin) Normalize() error {
	var p Problems
	if o.HTTP.Addr == "" {
		o.HTTP.Addr = DefaultOriginAddr
	}
	o.Log.normalize(&p)
	o.Backend.Password = secret(o.Backend.Password, o.Backend.PasswordFile, "backend.password", &p)
	o.Backend.PasswordFrom, o.Backend.PasswordFile = o.Backend.PasswordFile, ""
	o.State.normalize(&p)
	o.Events.normalize(&p)
	if o.Keys.Reload == 0 {
		o.Keys.Reload = units.Duration(DefaultKeyReload)
	}
	if o.Caches.PrefetchHints == nil {
		t := true
		o.Caches.PrefetchHints = &t
	}
	return p.Err()
}

// Files lists the files the configuration refers to.
func (o *Origin) Files() []File {
	var fs []File
	add := func(key, path string) {
		if path != "" {
			fs = append(fs, File{Key: key, Path: path})
		}
	}
	secret := func(key, path string) {
		if path != "" {
			fs = append(fs, File{key, path, Secret})
		}
	}
	add("http.tls.certificate", o.HTTP.TLS.Certificate)
	secret("http.tls.key", o.HTTP.TLS.Key)
	secret("backend.password_file", o.Backend.PasswordFrom)
	add("auth.htpasswd", o.Auth.Htpasswd)
	add("policy", o.Policy)
	o.State.files(add)
	for i, ca := range o.Backend.CAs {
		add(fmt.Sprintf("backend.cas[%d]", i), ca)
	}
	for i, ca := range o.Caches.CAs {
		add(fmt.Sprintf("caches.cas[%d]", i), ca)
	}
	add("policies.file", o.Policies.File)
	return fs
}
