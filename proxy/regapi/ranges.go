package regapi

import (
	"strconv"
	"strings"
)

// ByteRange is a satisfiable single byte range of a blob.
type ByteRange struct {
	Start, Length int64
}

// ContentRange returns the Content-Range header value for r of size.
func (r ByteRange) ContentRange(size int64) string {
	return "bytes " + strconv.FormatInt(r.Start, 10) + "-" + strconv.FormatInt(r.Start+r.Length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

// ParseRange interprets a Range header against a blob of size bytes. It
// returns ok=false when the whole blob should be served instead (no
// header, a malformed one, a unit other than bytes, several ranges — all of
// which a server may ignore) and unsatisfiable=true when the range starts
// beyond the blob (416).
func ParseRange(header string, size int64) (r ByteRange, ok, unsatisfiable bool) {
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found || size < 0 || strings.Contains(spec, ",") {
		return ByteRange{}, false, false
	}
	spec = strings.TrimSpace(spec)
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return ByteRange{}, false, false
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" { // suffix: the last N bytes
		n, err := parseUint(last)
		if err != nil {
			return ByteRange{}, false, false
		}
		if n == 0 || size == 0 {
			return ByteRange{}, false, true
		}
		n = min(n, size)
		return ByteRange{Start: size - n, Length: n}, true, false
	}
	start, err := parseUint(first)
	if err != nil {
		return ByteRange{}, false, false
	}
	end := size - 1
	if last != "" {
		if end, err = parseUint(last); err != nil || end < start {
			return ByteRange{}, false, false
		}
		end = min(end, size-1)
	}
	if start >= size {
		return ByteRange{}, false, true
	}
	return ByteRange{Start: start, Length: end - start + 1}, true, false
}

// parseUint parses a non-negative decimal without sign or spaces.
func parseUint(s string) (int64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}
