package policies

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dtrcache/dtrcache/proxy/state"
)

// secretPrefix keys the sealed secrets (remote passwords) in the store.
const secretPrefix = "secrets/"

// Secrets keeps the write-only secrets of policies (remote registry
// passwords and tokens) in the state store, sealed with AES-256-GCM under
// a key that lives in a file readable by the origin alone (0600, refused
// otherwise). Neither the store's files nor an etcd snapshot hold a secret
// in the clear, and the API never returns one. Every origin replica reads
// the same key file (mounted from one Kubernetes Secret, say).
type Secrets struct {
	store state.Store
	aead  cipher.AEAD
}

// LoadSecretKey reads the 32-byte key at path, creating it (0600, in a
// directory it creates 0700) if create is set and it does not exist. A
// key file others can read is refused.
func LoadSecretKey(path string, create bool) ([]byte, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("secret key %s: %w", path, err)
		}
		key := make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("secret key %s: %w", path, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("secret key %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("secret key %s: %w", path, err)
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("secret key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret key %s is readable by others (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret key %s: %w", path, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key %s: %d bytes, want 32", path, len(key))
	}
	return key, nil
}

// NewSecrets returns secrets sealed with key (32 bytes) in store.
func NewSecrets(store state.Store, key []byte) (*Secrets, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("policies: secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Secrets{store: store, aead: aead}, nil
}

// seal encrypts value; the key it is stored under is the associated data,
// so a sealed value moved to another key does not open.
func (s *Secrets) seal(key, value string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(value), []byte(key)), nil
}

func (s *Secrets) open(key string, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", fmt.Errorf("policies: secret %s is corrupt", key)
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(key))
	if err != nil {
		return "", fmt.Errorf("policies: secret %s does not open with this key (was the key file replaced?): %w", key, err)
	}
	return string(plain), nil
}

// PutOp returns the write that stores the secret of policy id.
func (s *Secrets) PutOp(id, value string) (state.Op, error) {
	k := secretPrefix + id
	sealed, err := s.seal(k, value)
	if err != nil {
		return state.Op{}, err
	}
	return state.Put(k, sealed), nil
}

// DeleteOp returns the write that removes the secret of policy id.
func (s *Secrets) DeleteOp(id string) state.Op { return state.Delete(secretPrefix + id) }

// Get returns the secret of policy id ("" if it has none).
func (s *Secrets) Get(ctx context.Context, id string) (string, error) {
	kv, err := s.store.Get(ctx, secretPrefix+id)
	if errors.Is(err, state.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return s.open(kv.Key, kv.Value)
}
