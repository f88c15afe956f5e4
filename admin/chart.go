package admin

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// chart is one of the status page's small rate charts: server-rendered SVG,
// no script, no external resource.
type chart struct {
	Title       string
	ID          string
	Series      []series
	OnlyNonZero bool // drops: only the reasons that happened are drawn
	now         time.Time
}

// Plot area in the SVG's own units (it scales to its box).
const (
	svgW, svgH         = 400.0, 120.0
	plotL, plotR       = 44.0, 394.0
	plotTop, plotBelow = 10.0, 100.0
)

// Max is the top of the y axis: the highest rate, rounded up to 1, 2 or 5
// times a power of ten.
func (c chart) Max() float64 {
	m := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			m = math.Max(m, p.rate)
		}
	}
	if m <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(m)))
	for _, f := range []float64{1, 2, 5, 10} {
		if m <= f*e {
			return f * e
		}
	}
	return 10 * e
}

// SVG draws the chart. Every value in it is a number or a colour from a
// constant table, so it is safe as HTML.
func (c chart) SVG() template.HTML {
	var b strings.Builder
	top := c.Max()
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, svgW, svgH, template.HTMLEscapeString(c.Title))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#bbb"/>`, plotL, plotBelow, plotR, plotBelow)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#eee"/>`, plotL, plotTop, plotR, plotTop)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="ax" text-anchor="end">%s/s</text>`, plotL-4, plotTop+4, formatRate(top))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="ax" text-anchor="end">0</text>`, plotL-4, plotBelow+4)
	for i, lbl := range []string{"-60 min", "-30 min", "now"} {
		anchor := [...]string{"start", "middle", "end"}[i]
		x := plotL + float64(i)*(plotR-plotL)/2
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" class="ax" text-anchor="%s">%s</text>`, x, svgH-6, anchor, lbl)
	}
	drawn := 0
	for _, s := range c.Series {
		if len(s.Points) == 0 || (c.OnlyNonZero && s.Total == 0) {
			continue
		}
		drawn++
		// Steps: each rate is the average over its interval.
		var pts strings.Builder
		for _, p := range s.Points {
			y := c.y(p.rate, top)
			fmt.Fprintf(&pts, "%.1f,%.1f %.1f,%.1f ", c.x(p.from), y, c.x(p.at), y)
		}
		fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.Color, strings.TrimSpace(pts.String()))
	}
	if drawn == 0 {
		msg := "nothing in the last hour"
		if c.OnlyNonZero {
			msg = "no drops in the last hour"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" class="ax" text-anchor="middle">%s</text>`, (plotL+plotR)/2, (plotTop+plotBelow)/2, msg)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // numbers and constant strings only, the title escaped
}

func (c chart) x(at time.Time) float64 {
	f := 1 - c.now.Sub(at).Seconds()/chartWindow.Seconds()
	return plotL + math.Max(0, math.Min(1, f))*(plotR-plotL)
}

func (c chart) y(rate, top float64) float64 {
	return plotBelow - math.Min(1, rate/top)*(plotBelow-plotTop)
}

// formatRate prints a rate with at most three significant digits.
func formatRate(r float64) string {
	switch {
	case r == 0:
		return "0"
	case r >= 100 || r == math.Trunc(r):
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", r), "0"), ".")
	}
}
