package config

import (
	"fmt"
	"os"

	"github.com/dtrcache/dtrcache/proxy/units"
)

// State says where the origin keeps its state (caches, user settings,
// policies, jobs, the webhook outbox). Without etcd it is Badger under
// data_dir, for a single origin process.
type State struct {
	Etcd *Etcd `yaml:"etcd"`
}

// Etcd is the etcd cluster that several origin replicas share.
type Etcd struct {
	// Endpoints are the members' client URLs.
	Endpoints []string `yaml:"endpoints"`
	TLS       EtcdTLS  `yaml:"tls"`
	// Username and Password (or PasswordFile) authenticate with etcd's
	// auth, if the cluster enables it.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// Prefix is prepended to every key ("" means the store's default).
	Prefix string `yaml:"prefix"`
	// DialTimeout bounds connecting ("" means the store's default).
	DialTimeout units.Duration `yaml:"dial_timeout"`
}

// EtcdTLS are the PEM files of a TLS connection to etcd: the CA that
// signed the members' certificates, and the client certificate and key
// that a cluster with --client-cert-auth asks for.
type EtcdTLS struct {
	CA          string `yaml:"ca"`
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"`
}

// normalize reads the password file, refusing one that group or others
// may read.
func (s *State) normalize(p *Problems) {
	e := s.Etcd
	if e == nil || e.PasswordFile == "" {
		return
	}
	const key = "state.etcd.password"
	if fi, err := os.Stat(e.PasswordFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		p.Add(key+"_file", "%s has mode %s: readable by others; chmod 600 it", e.PasswordFile, fi.Mode().Perm())
		return
	}
	e.Password = secret(e.Password, e.PasswordFile, key, p)
	e.PasswordFile = ""
}

// files lists the TLS files of the state section.
func (s *State) files(add func(key, path string)) {
	if s.Etcd == nil {
		return
	}
	add("state.etcd.tls.ca", s.Etcd.TLS.CA)
	add("state.etcd.tls.certificate", s.Etcd.TLS.Certificate)
	add("state.etcd.tls.key", s.Etcd.TLS.Key) // refused if others may read it, by the state store
}

// String names the store for logs: the endpoints, never the password.
func (e *Etcd) String() string {
	return fmt.Sprintf("etcd %v", e.Endpoints)
}
