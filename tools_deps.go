//go:build tools

// This file pins dependencies that are about to be used while the packages
// that import them are being written. It is never built.
package tools

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/elazarl/goproxy"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/klauspost/compress/gzip"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/schollz/progressbar/v3"
	_ "go.uber.org/zap"
	_ "golang.org/x/crypto/bcrypt"
	_ "gopkg.in/yaml.v3"
)
