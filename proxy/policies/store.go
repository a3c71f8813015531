package policies

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/state"
)

// Kind is one of the three kinds of policy.
type Kind string

// The kinds of policy, named as in DTR's API paths.
const (
	Promotion     Kind = "promotionPolicies"
	PushMirroring Kind = "pushMirroringPolicies"
	PollMirroring Kind = "pollMirroringPolicies"
)

// Kinds lists every kind.
var kinds = []Kind{Promotion, PushMirroring, PollMirroring}

// ParseKind returns the kind an API path segment names.
func ParseKind(s string) (Kind, bool) {
	for _, k := range kinds {
		if string(k) == s {
			return k, true
		}
	}
	return "", false
}

// Where a policy came from.
const (
	SourceAPI  = "api"
	SourceFile = "file"
)

// policyPrefix keys the policies: policies/<id> → Record.
const policyPrefix = "policies/"

// Record is a stored policy of any kind, with who made it and when. The
// password of a mirroring policy is never in it (see Secrets).
type Record struct {
	Kind      Kind                        `json:"kind"`
	Promotion *policy.PromotionPolicy     `json:"promotion,omitempty"`
	Push      *policy.PushMirroringPolicy `json:"pushMirroring,omitempty"`
	Poll      *policy.PollMirroringPolicy `json:"pollMirroring,omitempty"`
	// AuthorID is the user who created the policy ("" for the file).
	AuthorID  string    `json:"authorID,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"lastUpdated"`
	// Source is SourceAPI or SourceFile (managed by the policy file: the
	// API does not change it).
	Source string `json:"source"`
	// HasPassword says a password is stored for the remote.
	HasPassword bool `json:"hasPassword,omitempty"`
}

// ID returns the policy's id.
func (r Record) ID() string {
	switch {
	case r.Promotion != nil:
		return r.Promotion.ID
	case r.Push != nil:
		return r.Push.ID
	case r.Poll != nil:
		return r.Poll.ID
	}
	return ""
}

// Name returns the policy's name ("" if it has none).
func (r Record) Name() string {
	switch {
	case r.Promotion != nil:
		return r.Promotion.Name
	case r.Push != nil:
		return r.Push.Name
	case r.Poll != nil:
		return r.Poll.Name
	}
	return ""
}

// Enabled reports whether the policy runs.
func (r Record) Enabled() bool {
	switch {
	case r.Promotion != nil:
		return r.Promotion.Enabled
	case r.Push != nil:
		return r.Push.Enabled
	case r.Poll != nil:
		return r.Poll.Enabled
	}
	return false
}

// Repository is the local repository the policy belongs to: the source of
// a promotion or push mirror, the target of a poll mirror.
func (r Record) Repository() string {
	switch {
	case r.Promotion != nil:
		return r.Promotion.SourceRepository
	case r.Push != nil:
		return r.Push.LocalRepository
	case r.Poll != nil:
		return r.Poll.LocalRepository
	}
	return ""
}

// Rules returns the policy's rules and tag template.
func (r Record) Rules() ([]policy.Rule, string) {
	switch {
	case r.Promotion != nil:
		return r.Promotion.Rules, r.Promotion.TagTemplate
	case r.Push != nil:
		return r.Push.Rules, r.Push.TagTemplate
	case r.Poll != nil:
		return r.Poll.Rules, r.Poll.TagTemplate
	}
	return nil, ""
}

// Remote returns the remote end of a mirroring policy.
func (r Record) Remote() (policy.Remote, bool) {
	switch {
	case r.Push != nil:
		return r.Push.Remote, true
	case r.Poll != nil:
		return r.Poll.Remote, true
	}
	return policy.Remote{}, false
}

// setID sets the id in the policy of r.
func (r *Record) setID(id string) {
	switch {
	case r.Promotion != nil:
		r.Promotion.ID = id
	case r.Push != nil:
		r.Push.ID = id
	case r.Poll != nil:
		r.Poll.ID = id
	}
}

// password returns the write-only password carried in a request and
// clears it from the record.
func (r *Record) takePassword() string {
	var p string
	switch {
	case r.Push != nil:
		p, r.Push.Password = r.Push.Password, ""
	case r.Poll != nil:
		p, r.Poll.Password = r.Poll.Password, ""
	}
	return p
}

// Validate checks the policy itself (not its chain or permissions).
func (r Record) Validate() error {
	switch {
	case r.Promotion != nil:
		return r.Promotion.Validate()
	case r.Push != nil:
		return r.Push.Validate()
	case r.Poll != nil:
		return r.Poll.Validate()
	}
	return errors.New("policies: empty record")
}

// View returns what the API shows: the policy's own fields (DTR's
// shape, password never included) with the record's metadata.
func (r Record) View() map[string]any {
	var raw []byte
	switch {
	case r.Promotion != nil:
		raw, _ = json.Marshal(r.Promotion)
	case r.Push != nil:
		raw, _ = json.Marshal(r.Push)
	case r.Poll != nil:
		raw, _ = json.Marshal(r.Poll)
	}
	out := map[string]any{}
	json.Unmarshal(raw, &out)
	delete(out, "password")
	out["authorID"] = r.AuthorID
	out["createdAt"] = r.CreatedAt
	out["lastUpdated"] = r.UpdatedAt
	out["source"] = r.Source
	if r.Push != nil || r.Poll != nil {
		out["hasPassword"] = r.HasPassword
	}
	return out
}

// newPolicyID returns a random id.
func newPolicyID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Errors of the policy store.
var (
	ErrNotFound = errors.New("policies: no such policy")
	ErrManaged  = errors.New("policies: managed by the policy file")
	ErrNameUsed = errors.New("policies: a policy with this name exists")
)

// namePrefix keys the policy names: policynames/<name> → id, so that a
// name is taken once across replicas (a conditional write, not a scan).
const namePrefix = "policynames/"

// put writes rec (new when prevRev is 0), with its secret if one is given
// (secret nil: keep the stored one), refusing a name another policy has.
func (s *Service) put(ctx context.Context, rec Record, prevRev int64, secret *string) (int64, error) {
	op, err := state.PutJSON(policyPrefix+rec.ID(), rec)
	if err != nil {
		return 0, err
	}
	conds := []state.Cond{{Key: op.Key, Rev: prevRev}}
	ops := []state.Op{op}
	oldName := ""
	if prevRev != 0 {
		old, _, err := s.get(ctx, rec.ID())
		if err != nil {
			return 0, err
		}
		oldName = old.Name()
	}
	if name := rec.Name(); name != "" {
		kv, err := s.c.Store.Get(ctx, namePrefix+name)
		switch {
		case errors.Is(err, state.ErrNotFound):
			conds = append(conds, state.Cond{Key: namePrefix + name, Rev: 0})
			ops = append(ops, state.Put(namePrefix+name, []byte(rec.ID())))
		case err != nil:
			return 0, err
		case string(kv.Value) != rec.ID():
			return 0, fmt.Errorf("%w: %q", ErrNameUsed, name)
		default:
			conds = append(conds, state.Cond{Key: kv.Key, Rev: kv.Rev})
		}
	}
	if oldName != "" && oldName != rec.Name() {
		ops = append(ops, state.Delete(namePrefix+oldName))
	}
	if secret != nil {
		if *secret == "" {
			ops = append(ops, s.secrets.DeleteOp(rec.ID()))
		} else {
			sop, err := s.secrets.PutOp(rec.ID(), *secret)
			if err != nil {
				return 0, err
			}
			ops = append(ops, sop)
		}
	}
	rev, err := s.c.Store.Txn(ctx, conds, ops...)
	if errors.Is(err, state.ErrConflict) && rec.Name() != "" {
		if kv, gerr := s.c.Store.Get(ctx, namePrefix+rec.Name()); gerr == nil && string(kv.Value) != rec.ID() {
			return 0, fmt.Errorf("%w: %q", ErrNameUsed, rec.Name())
		}
	}
	if err != nil {
		return 0, fmt.Errorf("policies: store %s: %w", rec.ID(), err)
	}
	s.policies.Observe(op.Key, op.Value, rev)
	return rev, nil
}

// get returns a stored policy and its revision.
func (s *Service) get(ctx context.Context, id string) (Record, int64, error) {
	if id == "" || strings.Contains(id, "/") {
		return Record{}, 0, ErrNotFound
	}
	var rec Record
	rev, err := state.GetJSON(ctx, s.c.Store, policyPrefix+id, &rec)
	if errors.Is(err, state.ErrNotFound) {
		return Record{}, 0, ErrNotFound
	}
	return rec, rev, err
}

// remove deletes a policy, its name and its secret.
func (s *Service) remove(ctx context.Context, id string, rev int64) error {
	ops := []state.Op{state.Delete(policyPrefix + id), s.secrets.DeleteOp(id)}
	if rec, _, err := s.get(ctx, id); err == nil && rec.Name() != "" {
		ops = append(ops, state.Delete(namePrefix+rec.Name()))
	}
	r, err := s.c.Store.Txn(ctx, []state.Cond{{Key: policyPrefix + id, Rev: rev}}, ops...)
	if err != nil {
		return fmt.Errorf("policies: delete %s: %w", id, err)
	}
	s.policies.ObserveDelete(policyPrefix+id, r)
	return nil
}

// records returns every stored policy: from the view once it is loaded,
// else from the store (before Run, as when the policy file is applied).
func (s *Service) records(ctx context.Context) ([]Record, error) {
	if s.policies.Ready() {
		return s.policies.All(), nil
	}
	kvs, err := s.c.Store.List(ctx, policyPrefix, "", 0)
	if err != nil {
		return nil, fmt.Errorf("policies: list: %w", err)
	}
	out := make([]Record, 0, len(kvs))
	for _, kv := range kvs {
		if rec, err := decodeRecord(kv.Key, kv.Value); err == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// All returns every policy, by id.
func (s *Service) All() []Record { return s.policies.All() }

// Lookup returns a policy by id or by name.
func (s *Service) Lookup(idOrName string) (Record, bool) {
	if rec, ok := s.policies.Get(policyPrefix + idOrName); ok {
		return rec, true
	}
	for _, rec := range s.policies.All() {
		if rec.Name() == idOrName {
			return rec, true
		}
	}
	return Record{}, false
}

func decodeRecord(_ string, b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.ID() == "" {
		return r, errors.New("policy record without a policy")
	}
	return r, nil
}
