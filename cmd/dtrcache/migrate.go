package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/cmd/dtrcache/progress"
	"github.com/dtrcache/dtrcache/proxy/state"
	"github.com/dtrcache/dtrcache/proxy/state/badgerstate"
	"github.com/dtrcache/dtrcache/proxy/units"
	"go.uber.org/zap"
)

// progressEvery is how often a migration prints how far it is.
const progressEvery = time.Second

// runOriginMigrate is `dtrcache origin migrate`: it copies the state of a
// single-node origin (Badger) into etcd, checks the copy key by key, and
// leaves the source as it was.
func runOriginMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("origin migrate", "origin migrate --from badger:DIR --to etcd:URL[,URL…] [flags]", stderr)
	from := fs.String("from", "", "the origin's Badger state: badger:DIR (its data_dir, or data_dir/db)")
	to := fs.String("to", "", "the etcd cluster: etcd:URL[,URL…] (the members' client URLs)")
	prefix := fs.String("prefix", "", "key prefix in etcd, as state.etcd.prefix (default /dtrcache/)")
	ca := fs.String("etcd-ca", "", "PEM CA of the members' certificates (state.etcd.tls.ca)")
	cert := fs.String("etcd-cert", "", "client certificate (state.etcd.tls.certificate)")
	key := fs.String("etcd-key", "", "client key, mode 0600 (state.etcd.tls.key)")
	user := fs.String("etcd-user", "", "etcd user (state.etcd.username)")
	passFile := fs.String("etcd-password-file", "", "file holding the etcd user's password, mode 0600")
	dial := fs.Duration("dial-timeout", 5*time.Second, "bound on connecting to etcd")
	force := fs.Bool("force", false, "copy into a prefix that already holds keys (existing keys of the source are replaced)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "dtrcache origin migrate: "+format+"\n", a...)
		return code
	}
	dir, ok := strings.CutPrefix(*from, "badger:")
	if !ok || dir == "" {
		fs.Usage()
		return fail(2, "--from must be badger:DIR, got %q", *from)
	}
	eps, ok := strings.CutPrefix(*to, "etcd:")
	if !ok || eps == "" {
		fs.Usage()
		return fail(2, "--to must be etcd:URL[,URL…], got %q", *to)
	}
	e := &config.Etcd{Endpoints: strings.Split(eps, ","), TLS: config.EtcdTLS{CA: *ca, Certificate: *cert, Key: *key},
		Username: *user, PasswordFile: *passFile, Prefix: *prefix, DialTimeout: units.Duration(*dial)}
	var p config.Problems
	origin := &config.Origin{State: config.State{Etcd: e}}
	p.Join(origin.Normalize())
	checkState(&p, origin)
	if err := p.Err(); err != nil {
		return fail(2, "%v", err)
	}

	db, err := badgerDir(dir)
	if err != nil {
		return fail(1, "%v", err)
	}
	src, err := badgerstate.Open(db)
	if errors.Is(err, badgerstate.ErrLocked) {
		return fail(1, "the origin using %s is still running (it holds the database's lock): stop it, then migrate", db)
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	defer src.Close()
	dst, err := openEtcd(ctx, e, zap.NewNop())
	if err != nil {
		return fail(1, "%v", err)
	}
	defer dst.Close()

	total, size, err := countKeys(ctx, src)
	if err != nil {
		return fail(1, "reading %s: %v", db, err)
	}
	there, err := dst.KeyCount(ctx)
	if err != nil {
		return fail(1, "%v", err)
	}
	if there > 0 && !*force {
		return fail(1, "etcd already holds %d keys under %s: refusing to mix states (--force copies over them; stop the replicas using it first)", there, dst.Prefix())
	}
	fmt.Fprintf(stdout, "migrating %d keys (%s) from %s to etcd %s under %s\n", total, progress.Human(size, "B"), db, strings.Join(e.Endpoints, ","), dst.Prefix())
	start, last := time.Now(), time.Now()
	copied, err := state.Copy(ctx, dst, src, state.CopyOptions{Overwrite: *force, Progress: func(keys, bytes int64) {
		if time.Since(last) >= progressEvery {
			last = time.Now()
			fmt.Fprintf(stdout, "  copied %d of %d keys (%s)\n", keys, total, progress.Human(bytes, "B"))
		}
	}})
	if err != nil {
		return fail(1, "after %d keys: %v", copied, err)
	}
	fmt.Fprintf(stdout, "  copied %d keys in %s; verifying\n", copied, time.Since(start).Round(time.Millisecond))
	compared, extra, err := state.Verify(ctx, dst, src, *force)
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "verified %d keys key by key", compared)
	if extra > 0 {
		fmt.Fprintf(stdout, " (%d keys under the prefix were there before and stay)", extra)
	}
	fmt.Fprintf(stdout, ".\nNext: give origin.yml a state.etcd section with these endpoints and prefix %s, then start the origin replicas.\nThe Badger state in %s is unchanged; keep it until the replicas serve.\n", dst.Prefix(), db)
	return 0
}

// badgerDir finds the Badger database of an origin: dir itself, or the
// db directory in it (dir being data_dir). It never creates one.
func badgerDir(dir string) (string, error) {
	for _, d := range []string{dir, filepath.Join(dir, "db")} {
		if _, err := os.Stat(filepath.Join(d, "MANIFEST")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no Badger database in %s (nor in %s)", dir, filepath.Join(dir, "db"))
}

// countKeys counts the keys of s and their bytes.
func countKeys(ctx context.Context, s state.Store) (keys, bytes int64, err error) {
	after := ""
	for {
		kvs, err := s.List(ctx, "", after, 1000)
		if err != nil {
			return keys, bytes, err
		}
		for _, kv := range kvs {
			keys++
			bytes += int64(len(kv.Key) + len(kv.Value))
		}
		if len(kvs) < 1000 {
			return keys, bytes, nil
		}
		after = kvs[len(kvs)-1].Key
	}
}
