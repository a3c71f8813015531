package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/dtrcache/dtrcache/policy"
	"gopkg.in/yaml.v3"
)

// PolicyFile is the origin's policy file: the promotion and mirroring
// policies to keep, in the JSON shapes of the API written as YAML.
//
//	promotion:
//	  - name: dev-to-qa
//	    sourceRepository: dev/app
//	    targetRepository: qa/app
//	    rules: [{field: tag, operator: semver, values: [">=1.0.0"]}]
//	    tagTemplate: "%n-%Y%m%d"
//	pushMirroring:
//	  - name: qa-to-eu
//	    localRepository: qa/app
//	    remoteHost: https://eu.example.org
//	    remoteRepository: prod/app
//	    username: mirror
//	    passwordFile: /etc/dtrcache/eu-password
//	pollMirroring: [...]
//
// A policy without `enabled` is enabled.
type PolicyFile struct {
	Promotion     []PolicyEntry[policy.PromotionPolicy]     `yaml:"promotion"`
	PushMirroring []PolicyEntry[policy.PushMirroringPolicy] `yaml:"pushMirroring"`
	PollMirroring []PolicyEntry[policy.PollMirroringPolicy] `yaml:"pollMirroring"`
}

// PolicyEntry is one policy of the file and the line it starts on.
type PolicyEntry[T any] struct {
	Policy T
	Line   int
}

// UnmarshalYAML decodes the policy strictly (unknown keys are errors) and
// enables it unless it says otherwise.
func (e *PolicyEntry[T]) UnmarshalYAML(n *yaml.Node) error {
	e.Line = n.Line
	enabled := true
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "enabled" {
				if err := n.Content[i+1].Decode(&enabled); err != nil {
					return fmt.Errorf("line %d: enabled: %w", n.Content[i+1].Line, err)
				}
			}
		}
	}
	// yaml.v3 checks unknown fields only from a Decoder: re-encode the
	// node and decode it strictly.
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(&e.Policy); err != nil {
		return fmt.Errorf("policy at line %d: %w", n.Line, offsetLines(err, n.Line-1))
	}
	setEnabled(&e.Policy, enabled)
	return nil
}

func setEnabled(p any, on bool) {
	switch v := p.(type) {
	case *policy.PromotionPolicy:
		v.Enabled = on
	case *policy.PushMirroringPolicy:
		v.Enabled = on
	case *policy.PollMirroringPolicy:
		v.Enabled = on
	}
}

// offsetLines shifts the line numbers of a yaml.v3 type error of a
// re-encoded node back to the file's.
func offsetLines(err error, by int) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	out := make([]string, len(te.Errors))
	for i, msg := range te.Errors {
		var line int
		var rest string
		if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
			rest = msg[len(fmt.Sprintf("line %d:", line)):]
			out[i] = fmt.Sprintf("line %d:%s", line+by, rest)
		} else {
			out[i] = msg
		}
	}
	return &yaml.TypeError{Errors: out}
}

// LoadPolicyFile reads and decodes a policy file. Values are checked by
// the policy engine, which names the policy and the key.
func LoadPolicyFile(path string) (*PolicyFile, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePolicyFile(data, path)
}

// ParsePolicyFile decodes a policy file's bytes; name is used in errors.
func ParsePolicyFile(data []byte, name string) (*PolicyFile, error) {
	var f PolicyFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &f, nil
}
