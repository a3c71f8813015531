package config

import (
	"github.com/dtrcache/dtrcache/policy"
)

// LoadAccess reads a repository access rules file (strict keys) and
// validates it.
func LoadAccess(path string) (*policy.Access, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseAccess(data, path)
}

// ParseAccess parses access rules YAML:
//
//	admins: [admin]
//	teams: [{name: web, members: [alice, bob]}]
//	repositories:
//	  - pattern: "website/**"
//	    public: false
//	    grants: [{team: web, actions: [pull]}, {user: admin, actions: [push]}]
func ParseAccess(data []byte, source string) (*policy.Access, error) {
	var c policy.AccessConfig
	if err := decodeStrict(data, &c, source); err != nil {
		return nil, err
	}
	a, err := policy.NewAccess(c)
	if err != nil {
		return nil, Problems{err.Error()}
	}
	return a, nil
}
