package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chart draws one bar chart per table and returns its file name.
func (rep *report) chart(dir string, k groupKey, rs []*result) (string, error) {
	metric, label := "seconds", "seconds (lower is better)"
	switch kind(k.scenario) {
	case "range":
		metric, label = "ttfb_ms", "ms to first byte (lower is better)"
	case "throughput":
		metric, label = "mib_per_s", "MiB/s (higher is better)"
	case "resume":
		metric, label = "wan_ratio", "WAN bytes ÷ blob (lower is better)"
	case "order":
		metric, label = "first_layer_s", "seconds to the first layer (lower is better)"
	}
	var vals plotter.Values
	var names []string
	for _, r := range rs {
		v, ok := r.Median[metric]
		if !ok {
			v = 0
		}
		vals = append(vals, v)
		names = append(names, shortName(r.System))
	}
	if len(vals) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s — %s, %s", strings.SplitN(titleOf(k.scenario), ". ", 2)[1], k.image, k.profile)
	p.Y.Label.Text = label
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return "", err
	}
	bars.Color = color.RGBA{R: 46, G: 110, B: 190, A: 255}
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(names...)
	p.Y.Min = 0
	name := chartName(k)
	if err := p.Save(7*vg.Inch, 3.5*vg.Inch, filepath.Join(dir, name)); err != nil {
		return "", err
	}
	return name, nil
}
