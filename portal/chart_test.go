package portal

import (
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func series(code string, from time.Time, counts ...int64) Series {
	s := Series{Code: code}
	for i, n := range counts {
		s.Days = append(s.Days, DayCount{Date: from.AddDate(0, 0, i).Format(time.DateOnly), Conversions: n})
		s.Total += n
	}
	return s
}

// svgNode is enough of SVG to walk what Chart draws.
type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []svgNode  `xml:",any"`
}

func (n *svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n *svgNode) walk(fn func(*svgNode)) {
	fn(n)
	for i := range n.Nodes {
		n.Nodes[i].walk(fn)
	}
}

func parseSVG(t *testing.T, svg string) *svgNode {
	t.Helper()
	var root svgNode
	if err := xml.Unmarshal([]byte(svg), &root); err != nil {
		t.Fatalf("the chart is not well-formed XML: %v\n%s", err, svg)
	}
	return &root
}

func TestChart(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 0, 30)
	in := []Series{
		series("PROMO22", from, 3, 0, 7, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4),
		series("VIP10", from, make([]int64, 30)...),
		series("<b>&", from, make([]int64, 30)...), // not a code the tracker writes; escaped all the same
	}
	svg := string(Chart(in, from, to))
	if again := string(Chart(in, from, to)); again != svg {
		t.Fatal("the same series rendered two different charts")
	}
	root := parseSVG(t, svg)
	if root.XMLName.Local != "svg" || root.attr("role") != "img" || root.attr("aria-labelledby") != "promo-chart-title promo-chart-desc" {
		t.Fatalf("root %s %v", root.XMLName.Local, root.Attrs)
	}
	var title, desc string
	var groups []*svgNode
	var xLabels, yLabels, legend []string
	root.walk(func(n *svgNode) {
		switch {
		case n.XMLName.Local == "title" && n.attr("id") == "promo-chart-title":
			title = n.Text
		case n.XMLName.Local == "desc":
			desc = n.Text
		case n.XMLName.Local == "g" && n.attr("class") == "series":
			groups = append(groups, n)
		case n.XMLName.Local == "g" && n.attr("class") == "x-axis":
			for _, c := range n.Nodes {
				if c.XMLName.Local == "text" && len(c.Nodes) > 0 {
					xLabels = append(xLabels, c.Nodes[0].Text+"="+strings.TrimSpace(c.Text))
				}
			}
		case n.XMLName.Local == "g" && n.attr("class") == "y-axis":
			for _, c := range n.Nodes {
				if c.XMLName.Local == "text" && c.attr("transform") == "" {
					yLabels = append(yLabels, c.Text)
				}
			}
		case n.XMLName.Local == "g" && n.attr("class") == "legend":
			for _, c := range n.Nodes {
				if c.XMLName.Local == "text" {
					legend = append(legend, c.Text)
				}
			}
		}
	})
	if title != "Conversions per day by promo code, 2026-11-01 to 2026-11-30 (UTC days)" {
		t.Errorf("title %q", title)
	}
	if desc != "PROMO22: 17 conversions, most on 2026-11-03 (7); VIP10: 0 conversions; <b>&: 0 conversions." {
		t.Errorf("desc %q", desc)
	}
	if !slices.Equal(legend, []string{"PROMO22 (17)", "VIP10 (0)", "<b>& (0)"}) {
		t.Errorf("legend %q", legend)
	}
	// 7 → step 2, axis to 8.
	if !slices.Equal(yLabels, []string{"0", "2", "4", "6", "8"}) {
		t.Errorf("y labels %q", yLabels)
	}
	if !slices.Equal(xLabels, []string{"2026-11-01=Nov 1", "2026-11-06=Nov 6", "2026-11-11=Nov 11", "2026-11-16=Nov 16",
		"2026-11-21=Nov 21", "2026-11-26=Nov 26", "2026-11-30=Nov 30"}) {
		t.Errorf("x labels %q", xLabels)
	}
	if len(groups) != 3 {
		t.Fatalf("%d series groups", len(groups))
	}
	colors := map[string]bool{}
	for i, g := range groups {
		if g.attr("data-code") != in[i].Code || g.attr("data-total") != fmt.Sprint(in[i].Total) {
			t.Errorf("group %d: %v", i, g.Attrs)
		}
		colors[g.attr("stroke")] = true
		var points []string
		var circles []string
		for _, c := range g.Nodes {
			switch c.XMLName.Local {
			case "polyline":
				points = strings.Fields(c.attr("points"))
			case "circle":
				circles = append(circles, c.attr("data-date")+":"+c.attr("data-conversions"))
			}
		}
		if len(points) != 30 {
			t.Errorf("%s: %d points, want one a day", in[i].Code, len(points))
		}
		if i == 0 {
			// The first day is at the left edge at 3/8 of the height, the 3rd at 7/8.
			if points[0] != "48.0,143.5" || points[2] != "96.0,41.5" || points[29] != "744.0,118.0" {
				t.Errorf("PROMO22 points %v", points)
			}
			if !slices.Equal(circles, []string{"2026-11-01:3", "2026-11-03:7", "2026-11-04:1", "2026-11-07:2", "2026-11-30:4"}) {
				t.Errorf("PROMO22 markers %v", circles)
			}
		} else if len(circles) != 0 {
			t.Errorf("%s: markers on zero days %v", in[i].Code, circles)
		}
	}
	if len(colors) != 3 {
		t.Errorf("series share colours: %v", colors)
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "<b>&") {
		t.Errorf("chart carries a script or unescaped text")
	}
}

func TestChartEdgeCases(t *testing.T) {
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	// No series: axes and a message, still an accessible image.
	root := parseSVG(t, string(Chart(nil, day, day.AddDate(0, 0, 7))))
	var texts []string
	root.walk(func(n *svgNode) {
		if n.XMLName.Local == "text" || n.XMLName.Local == "desc" {
			texts = append(texts, n.Text)
		}
	})
	if !slices.Contains(texts, "No conversions in this range") || !slices.Contains(texts, "No conversions in this range.") {
		t.Errorf("empty chart texts %q", texts)
	}
	// One day: the point is in the middle and has a marker even at zero.
	svg := string(Chart([]Series{series("ONE", day, 0)}, day, day.AddDate(0, 0, 1)))
	parseSVG(t, svg)
	if !strings.Contains(svg, `<circle cx="396.0" cy="220.0" r="3" data-date="2026-11-20" data-conversions="0">`) {
		t.Errorf("one-day chart:\n%s", svg)
	}
	// Ten series wrap the legend onto more rows, each a distinct colour.
	var many []Series
	for i := range 10 {
		many = append(many, series(fmt.Sprintf("LONGCODE%02dXXXXXXXX", i), day, int64(i)))
	}
	root = parseSVG(t, string(Chart(many, day, day.AddDate(0, 0, 1))))
	rows := map[string]bool{}
	root.walk(func(n *svgNode) {
		if n.XMLName.Local == "g" && n.attr("class") == "legend" {
			for _, c := range n.Nodes {
				if c.XMLName.Local == "text" {
					rows[c.attr("y")] = true
				}
			}
		}
	})
	if len(rows) < 2 {
		t.Errorf("a ten-entry legend on %d rows", len(rows))
	}
}

func TestNiceStepAndLabels(t *testing.T) {
	for n, want := range map[int64]int64{0: 1, 1: 1, 5: 1, 6: 2, 10: 2, 11: 5, 25: 5, 26: 10, 1000: 200, 1001: 500} {
		if got := niceStep(n); got != want {
			t.Errorf("niceStep(%d) = %d, want %d", n, got, want)
		}
	}
	for n, want := range map[int][]int{0: nil, 1: {0}, 2: {0, 1}, 7: {0, 1, 2, 3, 4, 5, 6}, 8: {0, 2, 4, 6, 7}, 31: {0, 5, 10, 15, 20, 25, 30},
		366: {0, 61, 122, 183, 244, 305, 365}} {
		if got := labelled(n); !slices.Equal(got, want) {
			t.Errorf("labelled(%d) = %v, want %v", n, got, want)
		}
	}
}
