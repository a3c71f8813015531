package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// copyPage is how many keys Copy and Verify read from a store at once.
const copyPage = 500

// CopyOptions tune Copy.
type CopyOptions struct {
	// Overwrite writes keys that already exist in the destination (they
	// are replaced); without it, Copy writes each key only if the
	// destination lacks it, and stops with ErrConflict at one it has.
	Overwrite bool
	// Progress, if set, is called after each batch written with the keys
	// and bytes (keys and values) copied so far.
	Progress func(keys, bytes int64)
}

// Copy copies every key of src into dst, in key order, in transactions
// within the limits of the package doc, and returns how many keys it
// copied. Revisions are not copied: dst gives its own (readers compare
// revisions of one store only). Claims are not keys and are not copied.
func Copy(ctx context.Context, dst, src Store, opt CopyOptions) (int64, error) {
	var keys, size int64
	var batch []KV
	batchBytes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := writeBatch(ctx, dst, batch, opt.Overwrite); err != nil {
			return err
		}
		for _, kv := range batch {
			keys++
			size += int64(len(kv.Key) + len(kv.Value))
		}
		batch, batchBytes = batch[:0], 0
		if opt.Progress != nil {
			opt.Progress(keys, size)
		}
		return nil
	}
	after := ""
	for {
		kvs, err := src.List(ctx, "", after, copyPage)
		if err != nil {
			return keys, fmt.Errorf("state: copy: read: %w", err)
		}
		for _, kv := range kvs {
			// A condition per key (its name counted again) and the write.
			n := 2*len(kv.Key) + len(kv.Value)
			if len(batch) == MaxTxnOps || (len(batch) > 0 && batchBytes+n > MaxTxnBytes) {
				if err := flush(); err != nil {
					return keys, err
				}
			}
			batch = append(batch, kv)
			batchBytes += n
		}
		if len(kvs) < copyPage {
			break
		}
		after = kvs[len(kvs)-1].Key
	}
	return keys, flush()
}

// writeBatch writes kvs in one transaction, each on the condition that dst
// lacks it unless overwrite. A key whose value leaves no room for its
// condition in one transaction is written alone, after a read that finds
// it absent.
func writeBatch(ctx context.Context, dst Store, kvs []KV, overwrite bool) error {
	var conds []Cond
	ops := make([]Op, len(kvs))
	for i, kv := range kvs {
		ops[i] = Put(kv.Key, kv.Value)
		if !overwrite {
			conds = append(conds, Cond{Key: kv.Key})
		}
	}
	if len(kvs) == 1 && CheckTxn(conds, ops) != nil && CheckTxn(nil, ops) == nil {
		if _, err := dst.Get(ctx, kvs[0].Key); err == nil {
			return fmt.Errorf("state: copy: %w: %s exists in the destination", ErrConflict, kvs[0].Key)
		} else if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("state: copy: %w", err)
		}
		conds = nil
	}
	if _, err := dst.Txn(ctx, conds, ops...); errors.Is(err, ErrConflict) {
		return fmt.Errorf("state: copy: %w: a key of %s … %s exists in the destination", ErrConflict, kvs[0].Key, kvs[len(kvs)-1].Key)
	} else if err != nil {
		return fmt.Errorf("state: copy: write %s … %s: %w", kvs[0].Key, kvs[len(kvs)-1].Key, err)
	}
	return nil
}

// Verify reads every key of src and dst side by side and returns an
// error naming the first key that is missing, different or extra in dst,
// with the count of mismatches; nil when dst holds exactly src's keys and
// values. With extraOK, keys only dst has are counted but allowed (a copy
// with Overwrite into a store that was not empty). It returns the number
// of keys compared and of keys only dst has.
func Verify(ctx context.Context, dst, src Store, extraOK bool) (compared, extra int64, err error) {
	var first error
	bad := 0
	mismatch := func(format string, args ...any) {
		bad++
		if first == nil {
			first = fmt.Errorf(format, args...)
		}
	}
	sp, dp := &pager{s: src}, &pager{s: dst}
	for {
		a, aok, err := sp.next(ctx)
		if err != nil {
			return compared, extra, fmt.Errorf("state: verify: read the source: %w", err)
		}
		b, bok, err := dp.peek(ctx)
		if err != nil {
			return compared, extra, fmt.Errorf("state: verify: read the destination: %w", err)
		}
		for bok && (!aok || b.Key < a.Key) { // keys only dst has
			extra++
			if !extraOK {
				mismatch("%s is in the destination only", b.Key)
			}
			dp.take()
			if b, bok, err = dp.peek(ctx); err != nil {
				return compared, extra, fmt.Errorf("state: verify: read the destination: %w", err)
			}
		}
		if !aok {
			break
		}
		compared++
		switch {
		case !bok || b.Key != a.Key:
			mismatch("%s is missing from the destination", a.Key)
		case !bytes.Equal(a.Value, b.Value):
			mismatch("%s differs: %d bytes in the source, %d in the destination", a.Key, len(a.Value), len(b.Value))
			dp.take()
		default:
			dp.take()
		}
	}
	if bad > 0 {
		return compared, extra, fmt.Errorf("state: verify: %d mismatches; the first: %w", bad, first)
	}
	return compared, extra, nil
}

// pager reads a whole store in key order, a page at a time.
type pager struct {
	s     Store
	buf   []KV
	after string
	done  bool
}

func (p *pager) peek(ctx context.Context) (KV, bool, error) {
	if len(p.buf) == 0 && !p.done {
		kvs, err := p.s.List(ctx, "", p.after, copyPage)
		if err != nil {
			return KV{}, false, err
		}
		p.buf, p.done = kvs, len(kvs) < copyPage
		if len(kvs) > 0 {
			p.after = kvs[len(kvs)-1].Key
		}
	}
	if len(p.buf) == 0 {
		return KV{}, false, nil
	}
	return p.buf[0], true, nil
}

func (p *pager) take() { p.buf = p.buf[1:] }

func (p *pager) next(ctx context.Context) (KV, bool, error) {
	kv, ok, err := p.peek(ctx)
	if ok {
		p.take()
	}
	return kv, ok, err
}
