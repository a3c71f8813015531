package config

import "github.com/dtrcache/dtrcache/proxy/units"

// Console configures the origin's web console (/console/). Zero values
// mean the console package's defaults.
type Console struct {
	// Disabled turns the console off (it is on by default).
	Disabled bool `yaml:"disabled"`
	// IdleTimeout ends a session unused for that long; MaxLifetime ends
	// any session that old.
	IdleTimeout units.Duration `yaml:"idle_timeout"`
	MaxLifetime units.Duration `yaml:"max_lifetime"`
	// SecureCookies marks the cookies Secure on plain-HTTP requests too
	// (TLS terminated in front of the origin).
	SecureCookies bool `yaml:"secure_cookies"`
	// SignInBurst failed sign-ins are allowed per user and per client
	// address, then one more per SignInRefill.
	SignInBurst  int            `yaml:"signin_burst"`
	SignInRefill units.Duration `yaml:"signin_refill"`
	// SampleInterval is how often each cache's metrics are sampled for the
	// charts.
	SampleInterval units.Duration `yaml:"sample_interval"`
}
