package console

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// chart is a drawn chart with its text alternative.
type chart struct {
	ID, Title string
	// Summary says in words what the chart shows (for screen readers and
	// as the figure's caption).
	Summary string
	Legend  []legendItem
	SVG     template.HTML
}

type legendItem struct {
	Name, Color string
}

// point is one value of a series at a time; NaN is a gap.
type point struct {
	T time.Time
	V float64
}

// series is one line of a chart.
type series struct {
	Name   string
	Color  string
	Points []point
}

// band is a row of coloured spans (health: up, down, not probed).
type band struct {
	Spans []span
}

type span struct {
	From, To time.Time
	Color    string
	Label    string
}

// The chart's geometry, in SVG user units.
const (
	chartW, chartH             = 640.0, 200.0
	padLeft, padRight          = 72.0, 12.0
	padTop, padBottom          = 12.0, 28.0
	plotW                      = chartW - padLeft - padRight
	plotH                      = chartH - padTop - padBottom
	colorA, colorB, colorC     = "#1f6fb2", "#d1651a", "#2e8540"
	colorUp, colorDown, colorN = "#2e8540", "#c0392b", "#b0b0b0"
)

// drawChart draws series (and an optional band along the top) over
// [from, to]; yMax 0 scales to the data; format labels the y axis.
func drawChart(id, title string, from, to time.Time, ss []series, b *band, yMax float64, format func(float64) string) template.HTML {
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="100%%" role="img" aria-labelledby="%s-t" class="chart">`, chartW, chartH, id)
	fmt.Fprintf(&sb, `<title id="%s-t">%s</title>`, id, html.EscapeString(title))
	if yMax <= 0 {
		for _, s := range ss {
			for _, p := range s.Points {
				if !math.IsNaN(p.V) {
					yMax = math.Max(yMax, p.V)
				}
			}
		}
		if yMax <= 0 {
			yMax = 1
		}
		yMax = niceCeil(yMax)
	}
	span := to.Sub(from).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 { return padLeft + plotW*t.Sub(from).Seconds()/span }
	y := func(v float64) float64 { return padTop + plotH*(1-v/yMax) }
	// Grid and y labels at 0, ½ and the top.
	for _, f := range []float64{0, 0.5, 1} {
		yy := y(f * yMax)
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d0d0d0" stroke-width="1"/>`, padLeft, yy, padLeft+plotW, yy)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end" fill="#444">%s</text>`, padLeft-6, yy+4, html.EscapeString(format(f*yMax)))
	}
	// Time labels at both ends and the middle.
	for i, t := range []time.Time{from, from.Add(to.Sub(from) / 2), to} {
		anchor := [...]string{"start", "middle", "end"}[i]
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="%s" fill="#444">%s</text>`, x(t), chartH-8, anchor, t.UTC().Format("15:04"))
	}
	if b != nil {
		for _, sp := range b.Spans {
			x0, x1 := x(sp.From), x(sp.To)
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="8" fill="%s"><title>%s</title></rect>`, x0, padTop-10, math.Max(x1-x0, 1), sp.Color, html.EscapeString(sp.Label))
		}
	}
	for _, s := range ss {
		var seg []string
		flush := func() {
			switch len(seg) {
			case 0:
			case 1: // a lone point: a dot
				var px, py float64
				fmt.Sscanf(seg[0], "%f,%f", &px, &py)
				fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, px, py, s.Color)
			default:
				fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(seg, " "))
			}
			seg = seg[:0]
		}
		for _, p := range s.Points {
			if math.IsNaN(p.V) {
				flush()
				continue
			}
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", x(p.T), y(math.Min(p.V, yMax))))
		}
		flush()
	}
	fmt.Fprintf(&sb, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#888" stroke-width="1"/>`, padLeft, padTop, plotW, plotH)
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) // every text in it is escaped above; the rest are numbers and constants
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*exp >= v {
			return m * exp
		}
	}
	return 10 * exp
}

// delta is the increase of a counter between two samples (a counter that
// went down was reset: its new value is the increase).
func delta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// cacheCharts draws the charts of a cache's samples over the history
// window ending at now.
func cacheCharts(ss []sample, now time.Time, window time.Duration) []chart {
	from := now.Add(-window)
	if len(ss) > 0 && ss[0].At.After(from) {
		from = ss[0].At // no empty day before the first sample
	}
	if !now.After(from) {
		from = now.Add(-time.Minute)
	}
	// Health band and round-trip time.
	var hb band
	rtt := series{Name: "probe round trip (ms)", Color: colorA}
	up := 0
	for i, s := range ss {
		end := now
		if i+1 < len(ss) {
			end = ss[i+1].At
		}
		color, label := colorDown, "down"
		if s.Healthy {
			color, label = colorUp, "up"
			up++
		}
		hb.Spans = append(hb.Spans, span{From: s.At, To: end, Color: color, Label: label + " at " + when(s.At)})
		v := math.NaN()
		if s.Healthy {
			v = float64(s.RTT.Microseconds()) / 1000
		}
		rtt.Points = append(rtt.Points, point{s.At, v})
	}
	var hitRatio, store, budget, evictions series
	hitRatio = series{Name: "hit ratio", Color: colorA}
	served := []series{{Name: "served from the store", Color: colorC}, {Name: "served while filling", Color: colorB}, {Name: "filled from upstream", Color: colorA}}
	store = series{Name: "store use", Color: colorA}
	budget = series{Name: "budget", Color: colorB}
	evictions = series{Name: "evictions", Color: colorB}
	var totals [3]float64
	var evicted float64
	hasBudget := false
	for i, s := range ss {
		if !s.Scraped {
			for _, sr := range []*series{&hitRatio, &store, &budget, &evictions, &served[0], &served[1], &served[2]} {
				sr.Points = append(sr.Points, point{s.At, math.NaN()})
			}
			continue
		}
		store.Points = append(store.Points, point{s.At, s.StoreBytes})
		if s.StoreMax > 0 {
			hasBudget = true
			budget.Points = append(budget.Points, point{s.At, s.StoreMax})
		} else {
			budget.Points = append(budget.Points, point{s.At, math.NaN()})
		}
		if i == 0 || !ss[i-1].Scraped {
			continue // rates need the previous sample
		}
		p := ss[i-1]
		dt := s.At.Sub(p.At).Seconds()
		if dt <= 0 {
			continue
		}
		h, m, j := delta(p.Hits, s.Hits), delta(p.Misses, s.Misses), delta(p.Joins, s.Joins)
		ratio := math.NaN()
		if h+m+j > 0 {
			ratio = h / (h + m + j)
		}
		hitRatio.Points = append(hitRatio.Points, point{s.At, ratio})
		for k, v := range []float64{delta(p.ServedStore, s.ServedStore), delta(p.ServedFill, s.ServedFill), delta(p.Upstream, s.Upstream)} {
			served[k].Points = append(served[k].Points, point{s.At, v / dt})
			totals[k] += v
		}
		e := delta(p.Evictions, s.Evictions)
		evicted += e
		evictions.Points = append(evictions.Points, point{s.At, e})
	}
	last := sample{}
	if len(ss) > 0 {
		last = ss[len(ss)-1]
	}
	healthSummary := "No probes yet."
	if len(ss) > 0 {
		healthSummary = fmt.Sprintf("Healthy in %d of %d samples since %s; last probe round trip %s.", up, len(ss), when(ss[0].At), fmtMs(float64(last.RTT.Microseconds())/1000))
	}
	ratioSummary := "No blob requests with a body yet."
	if r := last.HitRatio(); r >= 0 {
		ratioSummary = fmt.Sprintf("Hit ratio over the cache's life: %.1f %% (%.0f hits, %.0f misses, %.0f joined a fill).", 100*r, last.Hits, last.Misses, last.Joins)
	}
	storeSummary := fmt.Sprintf("The store holds %s in %.0f blobs", humanBytes(int64(last.StoreBytes)), last.StoreBlobs)
	if last.StoreMax > 0 {
		storeSummary += fmt.Sprintf(", %.1f %% of its %s budget.", 100*last.StoreBytes/last.StoreMax, humanBytes(int64(last.StoreMax)))
	} else {
		storeSummary += "; it has no byte budget."
	}
	storeSeries := []series{store}
	if hasBudget {
		storeSeries = append(storeSeries, budget)
	}
	legend := func(ss ...series) []legendItem {
		var out []legendItem
		for _, s := range ss {
			out = append(out, legendItem{s.Name, s.Color})
		}
		return out
	}
	return []chart{
		{ID: "health", Title: "Health and probe round trip", Summary: healthSummary,
			Legend: []legendItem{{"up", colorUp}, {"down", colorDown}, {rtt.Name, rtt.Color}},
			SVG:    drawChart("health", "Health and probe round trip", from, now, []series{rtt}, &hb, 0, fmtMs)},
		{ID: "hits", Title: "Hit ratio", Summary: ratioSummary, Legend: legend(hitRatio),
			SVG: drawChart("hits", "Hit ratio per sample interval", from, now, []series{hitRatio}, nil, 1, func(v float64) string { return fmt.Sprintf("%.0f %%", 100*v) })},
		{ID: "bytes", Title: "Bytes served and filled", Legend: legend(served...),
			Summary: fmt.Sprintf("In this window: %s served from the store, %s served while filling, %s filled from upstream.", humanBytes(int64(totals[0])), humanBytes(int64(totals[1])), humanBytes(int64(totals[2]))),
			SVG:     drawChart("bytes", "Bytes per second served and filled", from, now, served, nil, 0, func(v float64) string { return humanBytes(int64(v)) + "/s" })},
		{ID: "store", Title: "Store use against its budget", Summary: storeSummary, Legend: legend(storeSeries...),
			SVG: drawChart("store", "Store use against its budget", from, now, storeSeries, nil, 0, func(v float64) string { return humanBytes(int64(v)) })},
		{ID: "evictions", Title: "Evictions", Summary: fmt.Sprintf("%.0f blobs evicted in this window (%.0f over the cache's life).", evicted, last.Evictions), Legend: legend(evictions),
			SVG: drawChart("evictions", "Blobs evicted per sample interval", from, now, []series{evictions}, nil, 0, func(v float64) string { return fmt.Sprintf("%g", v) })},
	}
}

func fmtMs(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.1f ms", v)
}
