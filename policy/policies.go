package policy

import (
	"encoding/json"
	"fmt"
	"time"
)

// Poll mirroring intervals.
const (
	// DefaultPollInterval is the interval of a poll-mirroring policy that
	// sets none, as in DTR.
	DefaultPollInterval = 30 * time.Minute
	// MinPollInterval is the shortest interval accepted, so that a policy
	// cannot hammer a remote registry.
	MinPollInterval = time.Minute
)

// PromotionPolicy copies the tags of one repository that meet its rules to
// another repository of the same origin, on every push and, when created
// with initialEvaluation, once for the tags already there. The JSON keys
// are DTR's. It is plain data: CompileRules and ParseTagTemplate give the
// engine what it evaluates, and DetectPromotionCycle guards chains.
type PromotionPolicy struct {
	// ID identifies the policy; the store assigns it.
	ID string `json:"id,omitempty" yaml:"id,omitempty"`
	// Name is an optional name, for the YAML form and the CLI (dtrcache's
	// addition; DTR has none).
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Enabled policies run; disabled ones are kept but ignored.
	Enabled bool `json:"enabled" yaml:"enabled"`
	// SourceRepository is the repository the policy watches, e.g. "dev/app".
	SourceRepository string `json:"sourceRepository" yaml:"sourceRepository"`
	// TargetRepository is where matching tags go, e.g. "qa/app".
	TargetRepository string `json:"targetRepository" yaml:"targetRepository"`
	// Rules must all hold for a tag to be promoted; none means every tag.
	Rules []Rule `json:"rules" yaml:"rules"`
	// TagTemplate names the target tag (see TagTemplate); empty keeps the
	// tag.
	TagTemplate string `json:"tagTemplate" yaml:"tagTemplate"`
}

// Validate reports every problem of p at once, each naming its JSON key,
// in a *ValidationError wrapping ErrInvalidPolicy. Chains are checked
// apart, by DetectPromotionCycle.
func (p PromotionPolicy) Validate() error {
	var ps problems
	ps.common(p.ID, p.Name, p.Rules, p.TagTemplate)
	ps.addErr("sourceRepository", checkRepository(p.SourceRepository))
	ps.addErr("targetRepository", checkRepository(p.TargetRepository))
	if p.SourceRepository != "" && p.SourceRepository == p.TargetRepository {
		ps.add("targetRepository", "%q is the source repository; a promotion goes to another repository", p.TargetRepository)
	}
	return ps.err()
}

// label names a policy in messages: its name, else its ID, else "new".
func label(id, name string) string {
	switch {
	case name != "":
		return fmt.Sprintf("%q", name)
	case id != "":
		return fmt.Sprintf("%q", id)
	}
	return "(new)"
}

// Remote is the remote registry end of a mirroring policy. Password is
// write-only: the policies' MarshalJSON and MarshalYAML leave it out and
// String never shows it, so a store keeps it apart (in a 0600 file) and an
// API response cannot leak it.
type Remote struct {
	// RemoteHost is the registry's base URL, e.g. "https://eu.example.org"
	// or "http://127.0.0.1:5000": http or https, no path.
	RemoteHost string `json:"remoteHost" yaml:"remoteHost"`
	// RemoteRepository is the repository on the remote, e.g. "prod/app".
	RemoteRepository string `json:"remoteRepository" yaml:"remoteRepository"`
	// Username authenticates to the remote; empty for anonymous access.
	Username string `json:"username,omitempty" yaml:"username,omitempty"`
	// Password is the password or access token for Username. Write-only.
	Password string `json:"password,omitempty" yaml:"password,omitempty"`
	// PasswordFile names a file holding the password instead (dtrcache's
	// addition, for the YAML form): an absolute path, read by the origin.
	PasswordFile string `json:"passwordFile,omitempty" yaml:"passwordFile,omitempty"`
	// RemoteCA is a PEM bundle of the CAs that sign the remote's
	// certificate, when the system roots do not.
	RemoteCA string `json:"remoteCA,omitempty" yaml:"remoteCA,omitempty"`
	// SkipTLSVerification accepts any certificate from the remote. Only
	// for tests: it must be set explicitly and excludes RemoteCA.
	SkipTLSVerification bool `json:"skipTLSVerification" yaml:"skipTLSVerification"`
}

// String describes r without its password.
func (r Remote) String() string {
	s := r.RemoteHost + " " + r.RemoteRepository
	if r.Username != "" {
		s += " as " + r.Username
	}
	return s
}

// GoString is String, so that %#v cannot print the password either.
func (r Remote) GoString() string { return r.String() }

// validate checks the remote fields.
func (r Remote) validate(ps *problems) {
	scheme, err := checkRemoteHost(r.RemoteHost)
	ps.addErr("remoteHost", err)
	ps.addErr("remoteRepository", checkRepository(r.RemoteRepository))
	ps.addErr("username", checkUsername(r.Username))
	switch {
	case r.Password != "" && r.PasswordFile != "":
		ps.add("passwordFile", "set together with password; use one of them")
	case r.Username == "" && (r.Password != "" || r.PasswordFile != ""):
		ps.add("username", "required when a password is set")
	case r.Username != "" && r.Password == "" && r.PasswordFile == "":
		ps.add("password", "required when username is set (or use passwordFile)")
	}
	if r.PasswordFile != "" {
		ps.addErr("passwordFile", checkPath(r.PasswordFile))
	}
	if r.RemoteCA != "" {
		ps.addErr("remoteCA", checkCA(r.RemoteCA))
		if r.SkipTLSVerification {
			ps.add("skipTLSVerification", "set together with remoteCA; use one of them")
		}
	}
	if scheme == "http" {
		if r.RemoteCA != "" {
			ps.add("remoteCA", "has no effect on an http:// remoteHost")
		}
		if r.SkipTLSVerification {
			ps.add("skipTLSVerification", "has no effect on an http:// remoteHost")
		}
	}
}

// PushMirroringPolicy copies the tags of a local repository that meet its
// rules to a repository of a remote registry (another dtrcache origin, a
// distribution registry, any OCI registry), on every push and, when
// created with initialEvaluation, once for the tags already there. An
// empty TagTemplate keeps the tag. The JSON keys are DTR's; Password is
// never written out.
type PushMirroringPolicy struct {
	ID      string `json:"id,omitempty" yaml:"id,omitempty"`
	Name    string `json:"name,omitempty" yaml:"name,omitempty"`
	Enabled bool   `json:"enabled" yaml:"enabled"`
	// LocalRepository is the repository the policy watches.
	LocalRepository string `json:"localRepository" yaml:"localRepository"`
	Remote          `yaml:",inline"`
	Rules           []Rule `json:"rules" yaml:"rules"`
	TagTemplate     string `json:"tagTemplate" yaml:"tagTemplate"`
}

// Validate reports every problem of p at once, each naming its JSON key,
// in a *ValidationError wrapping ErrInvalidPolicy.
func (p PushMirroringPolicy) Validate() error {
	var ps problems
	ps.common(p.ID, p.Name, p.Rules, p.TagTemplate)
	ps.addErr("localRepository", checkRepository(p.LocalRepository))
	p.Remote.validate(&ps)
	return ps.err()
}

// MarshalJSON writes p without its password.
func (p PushMirroringPolicy) MarshalJSON() ([]byte, error) {
	type plain PushMirroringPolicy
	q := plain(p)
	q.Password = ""
	return json.Marshal(q)
}

// MarshalYAML gives YAML encoders (gopkg.in/yaml.v3) p without its
// password.
func (p PushMirroringPolicy) MarshalYAML() (any, error) {
	type plain PushMirroringPolicy
	q := plain(p)
	q.Password = ""
	return q, nil
}

// String describes p without its password.
func (p PushMirroringPolicy) String() string {
	return fmt.Sprintf("push mirroring %s: %s -> %s %s", label(p.ID, p.Name), p.LocalRepository, p.RemoteHost, p.RemoteRepository)
}

// GoString is String, so that %#v cannot print the password either.
func (p PushMirroringPolicy) GoString() string { return p.String() }

// PollMirroringPolicy keeps a local repository in sync with a repository
// of a remote registry: every Interval (and on demand) it lists the remote
// tags, and copies each that meets its rules and whose digest differs from
// the local one. A tag deleted remotely is deleted locally only with
// MirrorDeletes. The JSON keys are DTR's; Password is never written out.
type PollMirroringPolicy struct {
	ID      string `json:"id,omitempty" yaml:"id,omitempty"`
	Name    string `json:"name,omitempty" yaml:"name,omitempty"`
	Enabled bool   `json:"enabled" yaml:"enabled"`
	// LocalRepository is the repository the mirror writes to.
	LocalRepository string `json:"localRepository" yaml:"localRepository"`
	Remote          `yaml:",inline"`
	Rules           []Rule `json:"rules" yaml:"rules"`
	TagTemplate     string `json:"tagTemplate" yaml:"tagTemplate"`
	// Interval is the time between polls; zero means DefaultPollInterval,
	// and less than MinPollInterval is refused.
	Interval Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// MirrorDeletes deletes local tags whose remote tag is gone.
	MirrorDeletes bool `json:"mirrorDeletes" yaml:"mirrorDeletes"`
}

// Validate reports every problem of p at once, each naming its JSON key,
// in a *ValidationError wrapping ErrInvalidPolicy.
func (p PollMirroringPolicy) Validate() error {
	var ps problems
	ps.common(p.ID, p.Name, p.Rules, p.TagTemplate)
	ps.addErr("localRepository", checkRepository(p.LocalRepository))
	p.Remote.validate(&ps)
	switch d := time.Duration(p.Interval); {
	case d < 0:
		ps.add("interval", "%s is negative", p.Interval)
	case d > 0 && d < MinPollInterval:
		ps.add("interval", "%s is below the minimum of %s", p.Interval, Duration(MinPollInterval))
	}
	return ps.err()
}

// PollInterval returns the interval between polls, DefaultPollInterval
// when none is set.
func (p PollMirroringPolicy) PollInterval() time.Duration {
	if p.Interval == 0 {
		return DefaultPollInterval
	}
	return time.Duration(p.Interval)
}

// MarshalJSON writes p without its password.
func (p PollMirroringPolicy) MarshalJSON() ([]byte, error) {
	type plain PollMirroringPolicy
	q := plain(p)
	q.Password = ""
	return json.Marshal(q)
}

// MarshalYAML gives YAML encoders (gopkg.in/yaml.v3) p without its
// password.
func (p PollMirroringPolicy) MarshalYAML() (any, error) {
	type plain PollMirroringPolicy
	q := plain(p)
	q.Password = ""
	return q, nil
}

// String describes p without its password.
func (p PollMirroringPolicy) String() string {
	return fmt.Sprintf("poll mirroring %s: %s %s -> %s every %s", label(p.ID, p.Name), p.RemoteHost, p.RemoteRepository, p.LocalRepository, Duration(p.PollInterval()))
}

// GoString is String, so that %#v cannot print the password either.
func (p PollMirroringPolicy) GoString() string { return p.String() }

// common checks what every policy has: id, name, rules and tag template.
func (ps *problems) common(id, name string, rules []Rule, tagTemplate string) {
	if id != "" {
		ps.addErr("id", checkName(id))
	}
	if name != "" {
		ps.addErr("name", checkName(name))
	}
	ps.rules(rules)
	ps.tagTemplate("tagTemplate", tagTemplate)
}
