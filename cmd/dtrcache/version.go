package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Build stamps, set by `make release` (and `make build`) with
// -ldflags "-X main.version=… -X main.commit=… -X main.date=…". Unset,
// versionInfo falls back to what the go command recorded in the binary.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// buildInfo is what `dtrcache version` prints.
type buildInfo struct {
	Version, Commit, Date, Go, Platform string
	Modified                            bool
}

// versionInfo returns the stamped build information, completed from the
// module build information (vcs.revision, vcs.time, vcs.modified) where a
// stamp is missing.
func versionInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			switch {
			case kv.Key == "vcs.revision" && b.Commit == "":
				b.Commit = kv.Value
			case kv.Key == "vcs.time" && b.Date == "":
				b.Date = kv.Value
			case kv.Key == "vcs.modified" && commit == "":
				b.Modified = kv.Value == "true"
			}
		}
	}
	return b
}

// String formats b as one line: "dtrcache v1.2.0 (commit 0123456789ab,
// built 2026-01-02T03:04:05Z, go1.26.8, linux/arm64)".
func (b buildInfo) String() string {
	s := "dtrcache " + b.Version + " ("
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += "-dirty"
		}
		s += "commit " + c + ", "
	}
	if b.Date != "" {
		s += "built " + b.Date + ", "
	}
	return s + b.Go + ", " + b.Platform + ")"
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version", stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fmt.Fprintln(stdout, versionInfo())
	return 0
}
