package regapi

import (
	"math"
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
// which a server may ignore) and unsatisfiable=true (416) for a range that
// is well-formed but selects nothing: one that starts at or beyond the end
// of the blob, an inverted one ("bytes=500-0"), or a zero-length suffix.
// distribution answers these with 416 too (through http.ServeContent), and
// the OCI conformance suite expects it.
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
		if end, err = parseUint(last); err != nil {
			return ByteRange{}, false, false
		}
		if end < start {
			return ByteRange{}, false, true
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

// ParseRangeStart parses a Range header of one range from a start
// ("bytes=a-" or "bytes=a-b") without knowing the blob's size: the start
// and the length, -1 for "to the end". Suffix ranges ("bytes=-n"), several
// ranges and other units are not ok.
func ParseRangeStart(header string) (start, length int64, ok bool) {
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found || a == "" {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if b == "" {
		return start, -1, true
	}
	end, err := strconv.ParseInt(b, 10, 64)
	if err != nil || end < start {
		return 0, 0, false
	}
	if end-start == math.MaxInt64 {
		return start, -1, true // "0-MaxInt64": everything
	}
	return start, end - start + 1, true
}

// RangeHeader returns the Range request header for length bytes from off
// (length < 0: to the end), or "" for the whole blob (off 0, length < 0).
func RangeHeader(off, length int64) string {
	if off <= 0 && length < 0 {
		return ""
	}
	end := ""
	if length >= 0 {
		end = strconv.FormatInt(off+length-1, 10)
	}
	return "bytes=" + strconv.FormatInt(off, 10) + "-" + end
}

// ParseContentRange parses a response's Content-Range "bytes a-b/total"
// (total "*" is -1): the first and last byte and the blob's size.
func ParseContentRange(header string) (start, end, total int64, ok bool) {
	spec, found := strings.CutPrefix(header, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, false
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, 0, false
		}
	}
	return start, end, total, true
}
