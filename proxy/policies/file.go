package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/dtrcache/dtrcache/policy"
)

// FileIDPrefix starts the id of every policy from the policy file: the
// id is the prefix and the policy's name, so it is stable across restarts.
const FileIDPrefix = "file-"

// FilePolicy is one policy of the origin's policy file, with where it was
// found (for messages).
type FilePolicy struct {
	Record
	// Where names it in errors, e.g. "policies.yml: promotion \"dev-to-qa\"".
	Where string
}

// SyncFile makes the file-managed policies exactly defs: it validates
// them all first (every problem reported at once, each naming the policy
// and the key), then creates, updates and removes. Policies made through
// the API are left alone, but a loop of promotions through both kinds is
// refused.
func (s *Service) SyncFile(ctx context.Context, defs []FilePolicy) error {
	existing, err := s.records(ctx)
	if err != nil {
		return err
	}
	var problems []error
	seen := map[string]bool{}
	var proms []policy.PromotionPolicy
	for _, o := range existing {
		if o.Source != SourceFile && o.Promotion != nil {
			proms = append(proms, *o.Promotion)
		}
	}
	for i := range defs {
		d := &defs[i]
		name := d.Name()
		if name == "" {
			problems = append(problems, fmt.Errorf("%s: name: required in the policy file", d.Where))
			continue
		}
		if seen[name] {
			problems = append(problems, fmt.Errorf("%s: name: %q is used twice", d.Where, name))
			continue
		}
		seen[name] = true
		d.setID(FileIDPrefix + name)
		if err := d.Validate(); err != nil {
			var ve *policy.ValidationError
			if errors.As(err, &ve) {
				for _, p := range ve.Problems {
					problems = append(problems, fmt.Errorf("%s: %w", d.Where, p))
				}
			} else {
				problems = append(problems, fmt.Errorf("%s: %w", d.Where, err))
			}
			continue
		}
		if remote, ok := d.Remote(); ok {
			if err := s.checkRemote(ctx, remote); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", d.Where, err))
			}
		}
		if d.Promotion != nil {
			proms = append(proms, *d.Promotion)
		}
	}
	if err := policy.CheckPromotionCycles(proms); err != nil {
		problems = append(problems, fmt.Errorf("policy file: %w", err))
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	now := s.now()
	want := map[string]bool{}
	for _, d := range defs {
		rec := d.Record
		want[rec.ID()] = true
		secret := rec.takePassword()
		rec.HasPassword = secret != ""
		rec.Source, rec.AuthorID = SourceFile, ""
		old, rev, err := s.get(ctx, rec.ID())
		switch {
		case errors.Is(err, ErrNotFound):
			rec.CreatedAt, rec.UpdatedAt = now, now
		case err != nil:
			return err
		default:
			rec.CreatedAt, rec.UpdatedAt = old.CreatedAt, old.UpdatedAt
			if same(old, rec) && !rec.HasPassword && !old.HasPassword {
				continue
			}
			rec.UpdatedAt = now
		}
		if _, err := s.put(ctx, rec, rev, &secret); err != nil {
			return fmt.Errorf("%s: %w", d.Where, err)
		}
	}
	for _, o := range existing {
		if o.Source == SourceFile && !want[o.ID()] {
			_, rev, err := s.get(ctx, o.ID())
			if err == nil {
				err = s.remove(ctx, o.ID(), rev)
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// same reports whether two records describe the same policy.
func same(a, b Record) bool {
	ja, _ := json.Marshal(a.View())
	jb, _ := json.Marshal(b.View())
	var ma, mb map[string]any
	json.Unmarshal(ja, &ma)
	json.Unmarshal(jb, &mb)
	for _, m := range []map[string]any{ma, mb} {
		delete(m, "lastUpdated")
		delete(m, "createdAt")
	}
	return reflect.DeepEqual(ma, mb)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
