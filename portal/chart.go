package portal

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
)

// The report's chart: conversions per day of each charted code, as an
// inline SVG the server renders (no script, nothing to load), so it works
// without JavaScript and under the page's Content-Security-Policy. The output
// is a pure function of the series: the same report renders the same bytes.

// chartColors is Tableau 10, a palette chosen to stay distinguishable for
// the common colour-vision deficiencies; series take them in order.
var chartColors = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
	"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

const (
	chartW       = 760
	chartLeft    = 48
	chartRight   = chartW - 16
	chartTop     = 16
	chartBottom  = 220 // the x axis
	legendTop    = chartBottom + 48
	legendRow    = 20
	legendCharW  = 7.3 // 12px monospace
	maxXLabels   = 7
	maxYTicks    = 5
	dateLabelFmt = "Jan 2"
)

// Chart renders series (all of the same days) as an SVG line chart with
// axes, a legend, a <title> and a <desc> that says in words what it shows.
func Chart(series []Series, from, to time.Time) template.HTML {
	var days []string
	if len(series) > 0 {
		for _, d := range series[0].Days {
			days = append(days, d.Date)
		}
	}
	var maxN int64
	for _, s := range series {
		for _, d := range s.Days {
			maxN = max(maxN, d.Conversions)
		}
	}
	step := niceStep(maxN)
	yMax := max(step, (maxN+step-1)/step*step)

	// Legend entries flow left to right, wrapping at the chart's width.
	type entry struct {
		x, y  float64
		label string
	}
	var legend []entry
	x, y := float64(chartLeft), float64(legendTop)
	for _, s := range series {
		label := s.Code + " (" + strconv.FormatInt(s.Total, 10) + ")"
		w := 16 + legendCharW*float64(len(label)) + 20
		if x+w > chartRight && x > chartLeft {
			x, y = chartLeft, y+legendRow
		}
		legend = append(legend, entry{x, y, label})
		x += w
	}
	height := int(y) + 16
	if len(series) == 0 {
		height = legendTop
	}

	lastDay := to.Add(-time.Nanosecond).UTC().Format(time.DateOnly)
	var b strings.Builder
	title := "Conversions per day by promo code, " + from.UTC().Format(time.DateOnly) + " to " + lastDay + " (UTC days)"
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" id="promo-chart" class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="promo-chart-title promo-chart-desc" font-family="system-ui, sans-serif" font-size="11">`,
		chartW, height, chartW, height)
	fmt.Fprintf(&b, "\n<title id=\"promo-chart-title\">%s</title>", esc(title))
	fmt.Fprintf(&b, "\n<desc id=\"promo-chart-desc\">%s</desc>", esc(describe(series)))

	// y axis: gridlines and labels.
	b.WriteString("\n<g class=\"y-axis\" fill=\"currentColor\" text-anchor=\"end\">")
	for v := int64(0); v <= yMax; v += step {
		yy := yOf(v, yMax)
		fmt.Fprintf(&b, "\n<line x1=\"%d\" x2=\"%d\" y1=\"%s\" y2=\"%s\" stroke=\"currentColor\" stroke-opacity=\"%s\"/>",
			chartLeft, chartRight, f1(yy), f1(yy), map[bool]string{true: "0.6", false: "0.15"}[v == 0])
		fmt.Fprintf(&b, "<text x=\"%d\" y=\"%s\">%d</text>", chartLeft-6, f1(yy+4), v)
	}
	fmt.Fprintf(&b, "\n<text x=\"12\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 12 %d)\">conversions</text>",
		(chartTop+chartBottom)/2, (chartTop+chartBottom)/2)
	b.WriteString("\n</g>")

	// x axis: date labels, at most maxXLabels, evenly spaced.
	b.WriteString("\n<g class=\"x-axis\" fill=\"currentColor\" text-anchor=\"middle\">")
	for _, i := range labelled(len(days)) {
		d, _ := time.Parse(time.DateOnly, days[i])
		xx := xOf(i, len(days))
		fmt.Fprintf(&b, "\n<line x1=\"%s\" x2=\"%s\" y1=\"%d\" y2=\"%d\" stroke=\"currentColor\" stroke-opacity=\"0.6\"/>", f1(xx), f1(xx), chartBottom, chartBottom+4)
		fmt.Fprintf(&b, "<text x=\"%s\" y=\"%d\"><title>%s</title>%s</text>", f1(xx), chartBottom+16, days[i], esc(d.Format(dateLabelFmt)))
	}
	fmt.Fprintf(&b, "\n<text x=\"%d\" y=\"%d\">%s</text>", (chartLeft+chartRight)/2, chartBottom+34,
		esc("UTC day, "+from.UTC().Format(time.DateOnly)+" to "+lastDay))
	b.WriteString("\n</g>")

	if len(series) == 0 {
		fmt.Fprintf(&b, "\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"currentColor\">No conversions in this range</text>",
			(chartLeft+chartRight)/2, (chartTop+chartBottom)/2)
	}
	for si, s := range series {
		color := chartColors[si%len(chartColors)]
		fmt.Fprintf(&b, "\n<g class=\"series\" data-code=\"%s\" data-total=\"%d\" stroke=\"%s\" fill=\"%s\">", esc(s.Code), s.Total, color, color)
		fmt.Fprintf(&b, "<title>%s: %d conversion%s</title>", esc(s.Code), s.Total, plural(s.Total))
		pts := make([]string, len(s.Days))
		for i, d := range s.Days {
			pts[i] = f1(xOf(i, len(s.Days))) + "," + f1(yOf(d.Conversions, yMax))
		}
		fmt.Fprintf(&b, "\n<polyline fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"%s\"/>", strings.Join(pts, " "))
		for i, d := range s.Days {
			if d.Conversions == 0 && len(s.Days) > 1 {
				continue
			}
			fmt.Fprintf(&b, "\n<circle cx=\"%s\" cy=\"%s\" r=\"3\" data-date=\"%s\" data-conversions=\"%d\"><title>%s, %s: %d conversion%s</title></circle>",
				f1(xOf(i, len(s.Days))), f1(yOf(d.Conversions, yMax)), d.Date, d.Conversions, esc(s.Code), d.Date, d.Conversions, plural(d.Conversions))
		}
		b.WriteString("\n</g>")
	}

	b.WriteString("\n<g class=\"legend\" font-family=\"ui-monospace, monospace\" font-size=\"12\">")
	for i, e := range legend {
		fmt.Fprintf(&b, "\n<rect x=\"%s\" y=\"%s\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%s\" y=\"%s\" fill=\"currentColor\">%s</text>",
			f1(e.x), f1(e.y-10), chartColors[i%len(chartColors)], f1(e.x+16), f1(e.y), esc(e.label))
	}
	b.WriteString("\n</g>\n</svg>")
	return template.HTML(b.String()) //nolint:gosec // every caller-derived text above goes through esc
}

// describe says what the chart shows, for screen readers.
func describe(series []Series) string {
	if len(series) == 0 {
		return "No conversions in this range."
	}
	parts := make([]string, 0, len(series))
	for _, s := range series {
		var peak DayCount
		for _, d := range s.Days {
			if d.Conversions > peak.Conversions {
				peak = d
			}
		}
		p := fmt.Sprintf("%s: %d conversion%s", s.Code, s.Total, plural(s.Total))
		if peak.Conversions > 0 {
			p += fmt.Sprintf(", most on %s (%d)", peak.Date, peak.Conversions)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ") + "."
}

// niceStep is the y-axis step: 1, 2 or 5 times a power of ten, so that at
// most maxYTicks steps reach n.
func niceStep(n int64) int64 {
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if s := m * p; (n+s-1)/s <= maxYTicks {
				return s
			}
		}
	}
}

// labelled picks the indexes of the days that get a date label: every k-th
// from the first, and the last when it is at least half a step from the
// previous label.
func labelled(n int) []int {
	if n == 0 {
		return nil
	}
	k := max(1, (n-1+maxXLabels-2)/(maxXLabels-1))
	var out []int
	for i := 0; i < n; i += k {
		out = append(out, i)
	}
	if last := out[len(out)-1]; last != n-1 && 2*(n-1-last) >= k {
		out = append(out, n-1)
	}
	return out
}

func xOf(i, n int) float64 {
	if n <= 1 {
		return float64(chartLeft+chartRight) / 2
	}
	return chartLeft + float64(i)*float64(chartRight-chartLeft)/float64(n-1)
}

func yOf(v, yMax int64) float64 {
	return chartBottom - float64(v)*float64(chartBottom-chartTop)/float64(yMax)
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string { return template.HTMLEscapeString(s) }

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
