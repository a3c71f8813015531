package state

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// GetJSON reads key into v and returns its revision.
func GetJSON(ctx context.Context, s Store, key string, v any) (int64, error) {
	kv, err := s.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return 0, fmt.Errorf("state: decode %s: %w", key, err)
	}
	return kv.Rev, nil
}

// PutJSON returns the Op that stores v as JSON under key.
func PutJSON(key string, v any) (Op, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Op{}, fmt.Errorf("state: encode %s: %w", key, err)
	}
	return Put(key, b), nil
}

// Update reads key into a fresh T, lets fn change it, and writes it back
// if nobody wrote the key in between, retrying on conflicts. fn sees the
// zero T and found=false when the key does not exist; returning an error
// aborts with that error. It returns the value written.
func Update[T any](ctx context.Context, s Store, key string, fn func(v *T, found bool) error) (T, error) {
	for {
		var v T
		rev, err := GetJSON(ctx, s, key, &v)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return v, err
		}
		if err := fn(&v, found); err != nil {
			return v, err
		}
		op, err := PutJSON(key, v)
		if err != nil {
			return v, err
		}
		_, err = s.Txn(ctx, []Cond{{Key: key, Rev: rev}}, op)
		if errors.Is(err, ErrConflict) {
			if ctx.Err() != nil {
				return v, ctx.Err()
			}
			continue
		}
		return v, err
	}
}

// Append stores value under prefix with the next number of the counter
// at counterKey, atomically with extra (which may be empty), and returns
// the number. Numbers start at 1, have no gaps, and order the entries:
// their keys are prefix followed by the number in 20 digits, so List
// returns them in append order. Concurrent appends (from any replica)
// retry on conflicts.
func Append(ctx context.Context, s Store, counterKey, prefix string, value []byte, extra ...Op) (uint64, error) {
	for {
		var n uint64
		var rev int64
		kv, err := s.Get(ctx, counterKey)
		switch {
		case err == nil:
			if len(kv.Value) != 8 {
				return 0, fmt.Errorf("state: counter %s is corrupt", counterKey)
			}
			n, rev = binary.BigEndian.Uint64(kv.Value), kv.Rev
		case !errors.Is(err, ErrNotFound):
			return 0, err
		}
		n++
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], n)
		ops := append([]Op{Put(counterKey, buf[:]), Put(SeqKey(prefix, n), value)}, extra...)
		_, err = s.Txn(ctx, []Cond{{Key: counterKey, Rev: rev}}, ops...)
		if errors.Is(err, ErrConflict) {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

// SeqKey is the key Append gives to number n under prefix.
func SeqKey(prefix string, n uint64) string {
	return fmt.Sprintf("%s%020d", prefix, n)
}

// ParseSeqKey returns the number of a key made by SeqKey.
func ParseSeqKey(prefix, key string) (uint64, error) {
	if len(key) != len(prefix)+20 || key[:len(prefix)] != prefix {
		return 0, fmt.Errorf("state: %q is not a sequence key under %q", key, prefix)
	}
	return strconv.ParseUint(key[len(prefix):], 10, 64)
}

// PrefixEnd returns the smallest key greater than every key with prefix
// ("" when there is none: the prefix is all 0xff bytes).
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}
