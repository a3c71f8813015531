package cache_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/dtrcache/dtrcache/casstore"
	"github.com/dtrcache/dtrcache/testenv"
	"github.com/dtrcache/dtrcache/testenv/wan"
)

// TestResumeBehindARunningFillJoinsIt is the regression test of a resumed
// download that went upstream a second time: a client cut at 5 MiB of a
// cold 12 MiB layer while the fill still runs, resuming with
// "Range: bytes=<offset>-" as containerd and Docker do, must be served from
// the running fill, so the WAN carries the blob once (before the fix the
// range went upstream on its own: 1.6 × the blob). Both modes, one stream
// and parallel fills.
func TestResumeBehindARunningFillJoinsIt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mirror   bool
		parallel int
	}{
		{"mirror/one-stream", true, 1},
		{"mirror/parallel", true, 4},
		{"redirect/parallel", false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			// 6 MiB/s: the 12 MiB fill takes 2 s, the client's first 5 MiB
			// arrive well before it ends.
			link, err := wan.Listen(t.Context(), "127.0.0.1:0", reg.Host, wan.Config{Bandwidth: 6 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer link.Close()
			e := newEnv(t, envOptions{upstreamURL: "http://" + link.Addr(), fill: casstore.FillOptions{Parallel: tc.parallel}})
			e.reg = reg
			img := e.push(t, "big/resume:1", testenv.ImageSpec{Layers: 1, LayerSize: 12 << 20, Seed: 41})
			d, data := layerBytes(t, img, 0)
			path, store := "/v2/big/resume/blobs/"+d.String(), e.mirror
			if !tc.mirror {
				path, store = path+"?token="+e.token(t, "big/resume", d), e.store
			}
			link.ResetStats()

			const cut = 5<<20 + 12345
			resp, err := http.Get(e.srv.URL + path)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET: %v %v", resp, err)
			}
			first := make([]byte, cut)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // the client's download breaks
			if _, err := store.Stat(casstore.MustParseDigest(d.String())); !errors.Is(err, casstore.ErrNotFound) {
				t.Fatalf("the fill ended before the resume (%v): the link is too fast for this test", err)
			}

			resp, body, err := e.get(t, path, map[string]string{"Range": fmt.Sprintf("bytes=%d-", cut)})
			if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(append(first, body...), data) {
				t.Fatalf("resume: status %d, %d bytes, %v", resp.StatusCode, len(body), err)
			}
			if want := fmt.Sprintf("bytes %d-%d/%d", cut, len(data)-1, len(data)); resp.Header.Get("Content-Range") != want {
				t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
			}
			if st := store.Stats(); st.DirectReads != 0 {
				t.Fatalf("%d direct reads, want 0 (the resume is behind the fill)", st.DirectReads)
			}
			// Every fill request started at a chunk: none at the resume offset.
			if ratio := float64(link.Stats().BytesDown) / float64(len(data)); ratio > 1.02 {
				t.Fatalf("the WAN carried %.3f × the blob, want ≤ 1.02", ratio)
			}
		})
	}
}

// TestRangeFarAheadOfARunningFillGoesDirect: a range the fill will not
// reach for seconds (2 MiB/s, 10 MiB away) is not made to wait: the store
// reads it with its own upstream range, once.
func TestRangeFarAheadOfARunningFillGoesDirect(t *testing.T) {
	reg, err := testenv.StartRegistry(t.Context(), testenv.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	link, err := wan.Listen(t.Context(), "127.0.0.1:0", reg.Host, wan.Config{Bandwidth: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	e := newEnv(t, envOptions{noRedirect: true, upstreamURL: "http://" + link.Addr()})
	e.reg = reg
	img := e.push(t, "big/far:1", testenv.ImageSpec{Layers: 1, LayerSize: 12 << 20, Seed: 43})
	d, data := layerBytes(t, img, 0)
	path := "/v2/big/far/blobs/" + d.String()

	resp, err := http.Get(e.srv.URL + path) // starts the fill
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v %v", resp, err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 512<<10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	off := int64(len(data)) - 1<<20
	resp, body, err := e.get(t, path, map[string]string{"Range": fmt.Sprintf("bytes=%d-", off)})
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[off:]) {
		t.Fatalf("far range: status %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	if _, err := e.mirror.Stat(casstore.MustParseDigest(d.String())); !errors.Is(err, casstore.ErrNotFound) {
		t.Fatalf("the fill ended before the far range was answered (%v): it waited for the fill", err)
	}
	if st := e.mirror.Stats(); st.DirectReads != 1 {
		t.Fatalf("%d direct reads, want 1", st.DirectReads)
	}
}
