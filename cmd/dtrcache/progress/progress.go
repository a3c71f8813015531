// Package progress is the terminal output the commands share: byte
// progress bars that stay silent when the output is not a terminal, and
// quantities with SI prefixes. It is internal: dtrcache's own commands
// (the production binary and the test environment's programs) use it, no
// other module.
package progress

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// NewBar returns a byte progress bar of total bytes labelled desc, or a
// silent one when out is not a terminal (logs stay readable). The bar
// ends its line when it finishes.
func NewBar(total int64, desc string, out io.Writer) *progressbar.ProgressBar {
	f, ok := out.(*os.File)
	visible := ok && term.IsTerminal(int(f.Fd()))
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(out),
		progressbar.OptionSetVisibility(visible),
		progressbar.OptionSetDescription(fmt.Sprintf("  %-26s", desc)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(out) }),
	)
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
