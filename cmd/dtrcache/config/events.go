package config

import (
	"os"
	"strings"

	"github.com/dtrcache/dtrcache/proxy/units"
)

// Events configures the origin's events and webhooks. Zero values mean
// the defaults of package events.
type Events struct {
	// Disabled turns events and the webhooks API off.
	Disabled bool `yaml:"disabled"`
	// Host is the registry host in the events' imageName (default: the
	// host each client named).
	Host string `yaml:"host"`
	// AllowPrivate are CIDRs of loopback, private or link-local addresses
	// webhook endpoints may have (refused otherwise).
	AllowPrivate []string `yaml:"allow_private"`
	// Timeout bounds one delivery attempt.
	Timeout units.Duration `yaml:"timeout"`
	// MaxAttempts failed attempts in a row, or failing for
	// MaxFailureTime, make a webhook inactive.
	MaxAttempts    int            `yaml:"max_attempts"`
	MaxFailureTime units.Duration `yaml:"max_failure_time"`
	// BackoffMin and BackoffMax bound the wait between attempts.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
	// Retention keeps delivered events; MaxRetention drops any event this
	// old, delivered or not.
	Retention    units.Duration `yaml:"retention"`
	MaxRetention units.Duration `yaml:"max_retention"`
	// DedupeWindow is how long a push through the origin waits for the
	// registry's notification of it; DedupeGrace how long a notification
	// waits for the origin's report.
	DedupeWindow units.Duration `yaml:"dedupe_window"`
	DedupeGrace  units.Duration `yaml:"dedupe_grace"`
	// Notifications configures the receiver of the backend registry's
	// notifications.
	Notifications Notifications `yaml:"notifications"`
}

// Notifications configures the receiver of the backend's notifications.
type Notifications struct {
	// SecretFile holds the shared secret the registry sends as a Bearer
	// token (mode 0600); unset, the receiver is off.
	SecretFile string `yaml:"secret_file"`
	// Secret is what Normalize read from SecretFile.
	Secret string `yaml:"-"`
}

// normalize reads the notifications secret, refusing a file that group
// or others may read.
func (e *Events) normalize(p *Problems) {
	f := e.Notifications.SecretFile
	if f == "" || e.Disabled {
		return
	}
	const key = "events.notifications.secret_file"
	fi, err := os.Stat(f)
	if err != nil {
		p.Add(key, "%v", err)
		return
	}
	if fi.Mode().Perm()&0o077 != 0 {
		p.Add(key, "%s has mode %s: readable by others; chmod 600 it", f, fi.Mode().Perm())
		return
	}
	b, err := os.ReadFile(f)
	if err != nil {
		p.Add(key, "%v", err)
		return
	}
	e.Notifications.Secret = strings.TrimRight(string(b), "\r\n")
}
