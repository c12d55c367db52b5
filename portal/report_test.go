package portal

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/routing"
)

// noRedirect shows a redirect instead of following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// conv is one conversion row for the report and history tests.
type conv struct {
	at                      time.Time
	code                    string
	offer, aff              int64
	status                  string
	amount, payout, revenue string
	currency, source        string
}

// add inserts the rows and returns their ids.
func (f *fixture) add(t *testing.T, rows ...conv) []string {
	t.Helper()
	var ids []string
	for _, r := range rows {
		if r.currency == "" {
			r.currency = "USD"
		}
		if r.source == "" {
			r.source = "postback"
		}
		if r.offer == 0 {
			r.offer = 7
		}
		if r.aff == 0 {
			r.aff = 42
		}
		var id string
		err := f.db.QueryRow(context.Background(), `
INSERT INTO conversions (id, created_at, updated_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id, status,
                         amount, payout, revenue, currency, source)
VALUES (gen_random_uuid(), $1, $1, $2, 'shop/' || lower($2), $3, $4, 1, $5, $6::numeric, $7::numeric, $8::numeric, $9, $10)
RETURNING id::text`, r.at, r.code, r.offer, r.aff, r.status, r.amount, r.payout, r.revenue, r.currency, r.source).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (f *fixture) report(t *testing.T, query string) Report {
	t.Helper()
	status, _, body := f.get(t, "/api/v1/reports/promo-codes?"+query)
	if status != 200 {
		t.Fatalf("report?%s: %d %s", query, status, body)
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

var nov20 = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

// reportRows is the data set of the report tests: three days, two codes
// (one written two ways), two currencies, every status.
func reportRows() []conv {
	return []conv{
		{at: nov20, code: "PROMO22", status: "approved", amount: "0.1", payout: "0.01", revenue: "0.02"},
		{at: nov20.Add(time.Hour), code: "PROMO22", status: "approved", amount: "0.2", payout: "0.02", revenue: "0.04"},
		// A value float64 cannot hold: 12345678901234567.89 + 0.3 must stay exact.
		{at: nov20.AddDate(0, 0, 1), code: "promo22", offer: 8, status: "approved", amount: "12345678901234567.89", payout: "1234567890123456.789", revenue: "0.001"},
		{at: nov20.AddDate(0, 0, 1), code: "PROMO22", status: "pending", amount: "100", payout: "10.00", revenue: "20.00"},
		// A refund: declined, so its payout and revenue never count.
		{at: nov20.AddDate(0, 0, 2), code: "PROMO22", status: "declined", amount: "50", payout: "5.00", revenue: "9.00"},
		// The same code in euros: its own row, never added to dollars.
		{at: nov20.AddDate(0, 0, 2), code: "PROMO22", status: "approved", amount: "10", payout: "1.00", revenue: "2.00", currency: "EUR"},
		{at: nov20, code: "VIP10", offer: 9, aff: 77, status: "declined", amount: "30", payout: "20.00", revenue: "35.00", currency: "EUR"},
		{at: nov20.AddDate(0, 0, 1), code: "VIP10", offer: 9, aff: 77, status: "pending", amount: "0", payout: "20.00", revenue: "35.00", currency: "EUR"},
		// Outside the range.
		{at: nov20.AddDate(0, 0, -1), code: "PROMO22", status: "approved", amount: "1000", payout: "100", revenue: "200"},
		{at: nov20.AddDate(0, 0, 3), code: "PROMO22", status: "approved", amount: "1000", payout: "100", revenue: "200"},
	}
}

func TestReportSumsAreExactPerCodeAndCurrency(t *testing.T) {
	f := newFixture(t)
	f.add(t, reportRows()...)

	r := f.report(t, "from=2026-11-20&to=2026-11-22")
	want := []CodeReport{
		// PROMO22 has 6 conversions in all, VIP10 2: PROMO22's rows first, by currency.
		{Code: "PROMO22", Currency: "EUR", Conversions: 1, Approved: 1, Amount: "10", Payout: "1.00", Revenue: "2.00", DeclinedAmount: "0"},
		{Code: "PROMO22", Currency: "USD", Conversions: 5, Approved: 3, Pending: 1, Declined: 1,
			Amount: "12345678901234668.19", Payout: "1234567890123466.819", Revenue: "20.061", DeclinedAmount: "50"},
		{Code: "VIP10", Currency: "EUR", Conversions: 2, Pending: 1, Declined: 1, Amount: "0", Payout: "20.00", Revenue: "35.00", DeclinedAmount: "30"},
	}
	if !reflect.DeepEqual(r.Items, want) {
		t.Fatalf("report rows\n got %+v\nwant %+v", r.Items, want)
	}
	if r.Truncated || !r.From.Equal(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)) || !r.To.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("range %s..%s truncated %v", r.From, r.To, r.Truncated)
	}

	// The chart's series: every day of the range, zeros included, all statuses and currencies.
	type point struct {
		code string
		days []int64
	}
	var got []point
	for _, s := range r.Series {
		p := point{code: s.Code}
		for i, d := range s.Days {
			if d.Date != fmt.Sprintf("2026-11-%d", 20+i) {
				t.Fatalf("%s: day %d is %s", s.Code, i, d.Date)
			}
			p.days = append(p.days, d.Conversions)
		}
		if s.Total != 6 && s.Total != 2 {
			t.Fatalf("%s: total %d", s.Code, s.Total)
		}
		got = append(got, p)
	}
	if !reflect.DeepEqual(got, []point{{"PROMO22", []int64{2, 2, 2}}, {"VIP10", []int64{1, 1, 0}}}) {
		t.Fatalf("series %+v", got)
	}

	// Ties in conversions order by code; limit cuts rows and says so.
	r = f.report(t, "from=2026-11-20&to=2026-11-22&limit=1")
	if len(r.Items) != 1 || !r.Truncated || r.Items[0].Currency != "EUR" || len(r.Series) != 1 {
		t.Fatalf("limit=1: %+v", r)
	}
}

func TestReportFilters(t *testing.T) {
	now := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	f := newFixtureWith(t, func(c *Config) { c.Now = func() time.Time { return now } })
	f.add(t, reportRows()...)
	f.add(t, conv{at: now.AddDate(0, 0, -30), code: "ANCIENT", status: "approved", amount: "1", payout: "1", revenue: "1"})

	codes := func(r Report) []string {
		var out []string
		for _, c := range r.Items {
			out = append(out, c.Code+"/"+c.Currency+"/"+fmt.Sprint(c.Conversions))
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		// Default: the 30 days through today (2026-10-24..2026-11-22): the 23rd
		// and ANCIENT (2026-10-23 18:00) are out, the 19th is in.
		{"", []string{"PROMO22/EUR/1", "PROMO22/USD/6", "VIP10/EUR/2"}},
		{"from=2026-11-20&to=2026-11-22&offer_id=8", []string{"promo22/USD/1"}},
		{"from=2026-11-20&to=2026-11-22&affiliate_id=77", []string{"VIP10/EUR/2"}},
		{"from=2026-11-20&to=2026-11-22&promo_code=vip10", []string{"VIP10/EUR/2"}},
		{"from=2026-11-20&to=2026-11-22&promo_code=vip10,Promo22", []string{"PROMO22/EUR/1", "PROMO22/USD/5", "VIP10/EUR/2"}},
		{"from=2026-11-20&to=2026-11-22&promo_code=vip10&promo_code=NONE", []string{"VIP10/EUR/2"}},
		{"from=2026-11-21T00:00:00Z&to=2026-11-21T12:00:00Z", []string{"PROMO22/USD/2", "VIP10/EUR/1"}},
		{"from=2026-11-22", []string{"PROMO22/EUR/1", "PROMO22/USD/2"}}, // from + 30 days: the 22nd and the 23rd
		{"to=2026-11-19", []string{"ANCIENT/USD/1", "PROMO22/USD/1"}},   // the 30 days through the 19th; a tie orders by code
		{"from=2026-12-01&to=2026-12-05", nil},
	} {
		r := f.report(t, tc.query)
		if got := codes(r); !slices.Equal(got, tc.want) {
			t.Errorf("?%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	if r := f.report(t, ""); !r.From.Equal(time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC)) || !r.To.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) || len(r.Series[0].Days) != 30 {
		t.Errorf("default range %s..%s with %d days", r.From, r.To, len(r.Series[0].Days))
	}
	// Selected codes are charted even without conversions, as selected (folded).
	r := f.report(t, "from=2026-11-20&to=2026-11-22&promo_code=vip10&promo_code=NONE")
	if len(r.Series) != 2 || r.Series[0].Code != "VIP10" || r.Series[1].Code != "NONE" || r.Series[1].Total != 0 || len(r.Series[1].Days) != 3 {
		t.Errorf("series of selected codes: %+v", r.Series)
	}
	// Without a selection the chart shows at most the first five codes.
	for i := range 7 {
		f.add(t, conv{at: nov20, code: fmt.Sprintf("MANY%d", i), status: "approved", amount: "1", payout: "1", revenue: "1"})
	}
	if r := f.report(t, "from=2026-11-20&to=2026-11-20"); len(r.Items) != 9 || len(r.Series) != 5 || r.Series[0].Code != "PROMO22" {
		t.Errorf("top five: %d rows, %d series", len(r.Items), len(r.Series))
	}

	for _, tc := range []struct{ query, param string }{
		{"from=yesterday", "from"},
		{"to=2026-13-01", "to"},
		{"from=2026-11-22&to=2026-11-21", "to"},
		{"from=2025-01-01&to=2026-01-02", "to"}, // 367 days
		{"offer_id=x", "offer_id"},
		{"affiliate_id=-1", "affiliate_id"},
		{"promo_code=PROMO-22", "promo_code"},
		{"promo_code=A,B,C,D,E,F,G,H,I,J,K", "promo_code"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
	} {
		status, _, body := f.get(t, "/api/v1/reports/promo-codes?"+tc.query)
		var e errorBody
		_ = json.Unmarshal(body, &e)
		if status != 400 || e.Error != "bad_request" || !strings.HasPrefix(e.Message, tc.param+": ") {
			t.Errorf("?%s: %d %s, want 400 naming %s", tc.query, status, body, tc.param)
		}
	}
	// A year (366 days) is allowed.
	if r := f.report(t, "from=2024-01-01&to=2024-12-31"); len(r.Series) != 0 || r.Items == nil {
		t.Errorf("a leap year: %+v", r)
	}
}

func TestReportCSV(t *testing.T) {
	f := newFixture(t)
	f.add(t, reportRows()...)
	// The database takes any text as promo_code (the tracker writes only
	// valid codes): the export neutralises whatever it holds.
	f.add(t, conv{at: nov20, code: `=HYPERLINK("http://x","y")`, status: "approved", amount: "1", payout: "-2.00", revenue: "-0.50"})

	status, hdr, body := f.get(t, "/api/v1/reports/promo-codes?from=2026-11-20&to=2026-11-22", "Accept", "text/csv")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") || !strings.Contains(hdr.Get("Content-Disposition"), "promo-codes.csv") {
		t.Fatalf("csv: %d %v %s", status, hdr, body)
	}
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		ReportColumns,
		{"PROMO22", "EUR", "1", "1", "0", "0", "10", "1.00", "2.00", "0"},
		{"PROMO22", "USD", "5", "3", "1", "1", "12345678901234668.19", "1234567890123466.819", "20.061", "50"},
		{"VIP10", "EUR", "2", "0", "1", "1", "0", "20.00", "35.00", "30"},
		{`'=HYPERLINK("http://x","y")`, "USD", "1", "1", "0", "0", "1", "-2.00", "-0.50", "0"},
	}
	if !reflect.DeepEqual(recs, want) {
		t.Fatalf("csv\n got %q\nwant %q", recs, want)
	}
	// format=csv works too (the page's link), and limit bounds the rows.
	status, _, body = f.get(t, "/api/v1/reports/promo-codes?from=2026-11-20&to=2026-11-22&format=csv&limit=2")
	if lines := strings.Count(string(body), "\n"); status != 200 || lines != 3 {
		t.Fatalf("format=csv&limit=2: %d, %d lines", status, lines)
	}
}

func TestReportPage(t *testing.T) {
	f := newFixture(t)
	f.add(t, reportRows()...)
	status, hdr, body := f.get(t, "/reports/promo-codes?from=2026-11-20&to=2026-11-22&offer_id=7")
	page := string(body)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("report page: %d %s", status, page)
	}
	for _, s := range []string{
		`<h2 id="promo-report-heading">Performance by promo code</h2>`,
		`<td class="code">PROMO22</td><td>USD</td><td class="num">4</td>`,
		`<svg xmlns="http://www.w3.org/2000/svg" id="promo-chart"`,
		`<g class="series" data-code="PROMO22" data-total="5"`,
		`href="/api/v1/reports/promo-codes?format=csv&amp;from=2026-11-20&amp;offer_id=7&amp;to=2026-11-22"`,
		`name="from" value="2026-11-20"`, `name="to" value="2026-11-22"`, `name="offer_id" value="7"`,
	} {
		if !strings.Contains(page, s) {
			t.Errorf("report page lacks %s", s)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "VIP10") {
		t.Errorf("report page has a script or another offer's code")
	}
	// Without dates the form shows the default range.
	before := time.Now().UTC().Format(time.DateOnly)
	_, _, body = f.get(t, "/reports/promo-codes")
	after := time.Now().UTC().Format(time.DateOnly) // the request may cross midnight
	if !strings.Contains(string(body), `name="to" value="`+before+`"`) && !strings.Contains(string(body), `name="to" value="`+after+`"`) {
		t.Errorf("the default range is not in the form (want to=%s)", after)
	}
	status, _, body = f.get(t, "/reports/promo-codes?promo_code=no-dash")
	if status != 400 || !strings.Contains(string(body), "Fix the filter promo_code: ") {
		t.Errorf("bad filter: %d", status)
	}

	// Signing in from the report returns to it, and never to another site.
	resp, err := noRedirect.PostForm(f.url+"/login", url.Values{"token": {token}, "next": {"/reports/promo-codes?offer_id=7"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/reports/promo-codes?offer_id=7" {
		t.Errorf("sign-in from the report: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`, "evil", ""} {
		if got := localPath(next); got != "/" {
			t.Errorf("next=%q redirects to %q", next, got)
		}
	}
}

// TestReportOnManyRows: 294,000 conversions over 30 days, 49 codes, two
// currencies, every status: the sums stay exact, and the time is logged.
func TestReportOnManyRows(t *testing.T) {
	f := newFixture(t)
	const n = 294_000 // 49 × 2 × 3 × 1000
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	_, err := f.db.Exec(context.Background(), `
INSERT INTO conversions (id, created_at, updated_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id, status,
                         amount, payout, revenue, currency, source)
SELECT gen_random_uuid(), $1::timestamptz + make_interval(secs => g * 8.8), $1::timestamptz + make_interval(secs => g * 8.8),
       'CODE' || (g % 49), 'shop/code' || (g % 49), 7, 42, 1, (ARRAY['approved', 'pending', 'declined'])[g % 3 + 1],
       19.99, 1.999, 0.01, (ARRAY['USD', 'EUR'])[g % 2 + 1], 'postback'
  FROM generate_series(0, $2::int - 1) AS g`, base, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(context.Background(), "ANALYZE conversions"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := f.report(t, "from=2026-11-01&to=2026-11-30")
	took := time.Since(start)
	if len(r.Items) != 98 || r.Truncated {
		t.Fatalf("%d rows (truncated %v), want 49 codes × 2 currencies", len(r.Items), r.Truncated)
	}
	var total int64
	for _, c := range r.Items {
		total += c.Conversions
		// code = g mod 49, currency g mod 2, status g mod 3 (coprime): each
		// row is 3,000 conversions, 1,000 of each status; 2,000 count in the sums.
		if c.Conversions != 3000 || c.Approved != 1000 || c.Pending != 1000 || c.Declined != 1000 ||
			c.Amount != "39980.00" || c.Payout != "3998.000" || c.Revenue != "20.00" || c.DeclinedAmount != "19990.00" {
			t.Fatalf("row %+v", c)
		}
	}
	if total != n || len(r.Series) != 5 || r.Series[0].Total != 6000 || len(r.Series[0].Days) != 30 {
		t.Fatalf("total %d, %d series", total, len(r.Series))
	}
	t.Logf("report over %d conversions (30 days, 98 rows, 5 series) in %s", n, took.Round(time.Millisecond))
}

// FuzzParseReportFilter: any query string is either refused with a
// FilterError naming a parameter, or gives a filter the queries can rely on.
func FuzzParseReportFilter(f *testing.F) {
	for _, s := range []string{"", "from=2026-11-20&to=2026-11-22", "promo_code=a,B,%20c&promo_code=d", "from=2026-11-20T10:00:00Z",
		"to=2026-02-29", "from=0001-01-01", "to=9999-12-31", "limit=1000&offer_id=9223372036854775807", "promo_code=,,,"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		rf, err := ParseReportFilter(q, now)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Param == "" || fe.Message == "" {
				t.Fatalf("%q: %v is not a FilterError", raw, err)
			}
			return
		}
		if !rf.To.After(rf.From) || rf.To.Sub(rf.From) > maxReportDays*24*time.Hour {
			t.Fatalf("%q: range %s..%s", raw, rf.From, rf.To)
		}
		if n := len(rf.Days()); n < 1 || n > maxReportDays+1 {
			t.Fatalf("%q: %d days", raw, n)
		}
		if len(rf.Codes) > maxReportCodes || rf.Limit < 0 || rf.Limit > maxLimit || rf.OfferID < 0 || rf.AffiliateID < 0 {
			t.Fatalf("%q: %+v", raw, rf)
		}
		for _, c := range rf.Codes {
			if !routing.ValidCode(c) || routing.Fold(c) != c || strings.Count(strings.Join(rf.Codes, ","), c) < 1 {
				t.Fatalf("%q: code %q", raw, c)
			}
		}
	})
}
