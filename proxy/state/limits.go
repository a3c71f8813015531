package state

import (
	"fmt"
	"time"
)

// CheckTxn returns ErrInvalid, wrapped with the problem, when a transaction
// is outside the limits of the package doc. Every implementation calls it
// before it writes, so the limits hold the same everywhere.
func CheckTxn(conds []Cond, ops []Op) error {
	if len(conds) > MaxTxnOps {
		return fmt.Errorf("%w: %d conditions in one transaction (at most %d)", ErrInvalid, len(conds), MaxTxnOps)
	}
	if len(ops) > MaxTxnOps {
		return fmt.Errorf("%w: %d writes in one transaction (at most %d)", ErrInvalid, len(ops), MaxTxnOps)
	}
	size := 0
	for _, c := range conds {
		if c.Key == "" {
			return fmt.Errorf("%w: a condition on the empty key", ErrInvalid)
		}
		size += len(c.Key)
	}
	seen := make(map[string]struct{}, len(ops))
	for _, op := range ops {
		if op.Key == "" {
			return fmt.Errorf("%w: a write of the empty key", ErrInvalid)
		}
		if _, dup := seen[op.Key]; dup {
			return fmt.Errorf("%w: %s written twice in one transaction", ErrInvalid, op.Key)
		}
		seen[op.Key] = struct{}{}
		size += len(op.Key) + len(op.Value)
	}
	if size > MaxTxnBytes {
		return fmt.Errorf("%w: a transaction of %d bytes of keys and values (at most %d)", ErrInvalid, size, MaxTxnBytes)
	}
	return nil
}

// CheckClaim returns ErrInvalid, wrapped, for a claim outside the limits:
// an empty key or a ttl that is not positive.
func CheckClaim(key string, ttl time.Duration) error {
	if key == "" {
		return fmt.Errorf("%w: a claim of the empty key", ErrInvalid)
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: claim ttl %s (must be positive)", ErrInvalid, ttl)
	}
	return nil
}
