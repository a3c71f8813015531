package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problems is a list of configuration problems, each naming its key.
type Problems []string

func (p Problems) Error() string {
	return "invalid configuration:\n  " + strings.Join(p, "\n  ")
}

// add records a problem at key.
func (p *Problems) add(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

// err returns p as an error, or nil if empty.
func (p Problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}

var (
	yamlLineRE    = regexp.MustCompile(`line (\d+): field (\S+) not found in type (\S+)`)
	yamlInvalidRE = regexp.MustCompile(`^yaml: unmarshal errors:\n`)
)

// decodeStrict decodes YAML into v, refusing unknown keys, and rewrites
// yaml.v3's messages to name the key.
func decodeStrict(data []byte, v any, file string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, errEOF(err)) {
		return nil
	}
	msg := yamlInvalidRE.ReplaceAllString(err.Error(), "")
	msg = yamlLineRE.ReplaceAllString(msg, `line $1: unknown key "$2"`)
	return fmt.Errorf("config %s: %s", file, strings.TrimSpace(msg))
}

// errEOF returns err if it is the empty-document EOF, else a sentinel that
// never matches.
func errEOF(err error) error {
	if err != nil && err.Error() == "EOF" {
		return err
	}
	return errNever
}

var errNever = errors.New("never")

// readFile reads a configuration file.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// secret returns an inline secret or the trimmed content of a file.
func secret(inline, file, key string, p *Problems) string {
	if file == "" {
		return inline
	}
	if inline != "" {
		p.add(key, "set either password or password_file, not both")
		return ""
	}
	b, err := os.ReadFile(file)
	if err != nil {
		p.add(key+"_file", "%v", err)
		return ""
	}
	return strings.TrimRight(string(b), "\r\n")
}
