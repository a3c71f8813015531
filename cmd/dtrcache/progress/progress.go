// Package progress is the terminal output the commands share: byte
// progress that is a bar on a terminal and plain lines otherwise, and
// quantities with SI prefixes. It is internal: dtrcache's own commands
// (the production binary and the test environment's programs) use it, no
// other module.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// LineEvery is how often a Bar that is not on a terminal prints a line.
const LineEvery = time.Second

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Bar reports a transfer of a known number of bytes. On a terminal it is
// a progress bar with the rate (progressbar/v3); otherwise — a pipe, a CI
// log — it prints a plain line at most every LineEvery and one when it
// finishes ("  cold, through the cache  45.2 MB of 95.9 MB (47 %), 12.3
// MB/s"), so long work shows progress there too. It is safe for
// concurrent use.
type Bar struct {
	bar *progressbar.ProgressBar // on a terminal; nil for plain lines
	out io.Writer
	now func() time.Time

	// mu guards the fields below (plain lines).
	mu       sync.Mutex
	desc     string
	total    int64
	done     int64
	start    time.Time
	last     time.Time // when the last line was printed
	finished bool
}

// NewBar returns a Bar of total bytes labelled desc, writing to out: a
// bar if out is a terminal, plain lines if not.
func NewBar(total int64, desc string, out io.Writer) *Bar {
	return newBar(total, desc, out, IsTerminal(out), time.Now)
}

// NewBarFor is NewBar for a caller that has decided whether out is a
// terminal (terminal false: plain lines).
func NewBarFor(total int64, desc string, out io.Writer, terminal bool) *Bar {
	return newBar(total, desc, out, terminal, time.Now)
}

func newBar(total int64, desc string, out io.Writer, tty bool, now func() time.Time) *Bar {
	b := &Bar{out: out, now: now, desc: desc, total: total, start: now()}
	b.last = b.start
	if tty {
		b.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(out),
			progressbar.OptionSetDescription(label(desc)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(out) }),
		)
	}
	return b
}

func label(desc string) string { return fmt.Sprintf("  %-26s", desc) }

// Write counts len(p) bytes, so a Bar can sit in an io.MultiWriter.
func (b *Bar) Write(p []byte) (int, error) {
	return len(p), b.Add64(int64(len(p)))
}

// Add64 counts n more bytes.
func (b *Bar) Add64(n int64) error {
	if b.bar != nil {
		return b.bar.Add64(n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if now := b.now(); now.Sub(b.last) >= LineEvery && !b.finished {
		b.last = now
		b.lineLocked(now)
	}
	return nil
}

// Describe changes the label.
func (b *Bar) Describe(desc string) {
	if b.bar != nil {
		b.bar.Describe(label(desc))
		return
	}
	b.mu.Lock()
	b.desc = desc
	b.mu.Unlock()
}

// Finish ends the bar's line (on a terminal), or prints the last plain
// line with the time taken.
func (b *Bar) Finish() error {
	if b.bar != nil {
		return b.bar.Finish()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return nil
	}
	b.finished = true
	now := b.now()
	b.lineLocked(now)
	return nil
}

// lineLocked prints one plain progress line.
func (b *Bar) lineLocked(now time.Time) {
	el := now.Sub(b.start)
	rate := ""
	if s := el.Seconds(); s > 0 {
		rate = ", " + Human(int64(float64(b.done)/s), "B/s")
	}
	pct := ""
	if b.total > 0 {
		pct = fmt.Sprintf(" (%d %%)", 100*b.done/b.total)
	}
	end := ""
	if b.finished {
		end = fmt.Sprintf(", done in %.1fs", el.Seconds())
	}
	fmt.Fprintf(b.out, "%s %s of %s%s%s%s\n", label(b.desc), Human(b.done, "B"), Human(b.total, "B"), pct, rate, end)
}

// Human formats v in unit with an SI prefix (k, M, G, T; powers of 1000)
// and one decimal: Human(95_900_000, "B") is "95.9 MB"; values below 1000
// are printed whole ("512 B").
func Human(v int64, unit string) string {
	f := float64(v)
	for _, p := range []string{"", "k", "M", "G", "T"} {
		if f < 1000 || p == "T" {
			if p == "" {
				return fmt.Sprintf("%d %s", v, unit)
			}
			return fmt.Sprintf("%.1f %s%s", f, p, unit)
		}
		f /= 1000
	}
	return ""
}
