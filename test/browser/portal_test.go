// Package browser drives the portal's web page in a real headless Chromium
// (Debian's chromium; hack/ensure-chromium.sh installs it) against the whole
// stack: conversions recorded through the tracker, codes from the cluster.
package browser

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"promocodes.dev/promo-operator/internal/devstack"
)

func chromium(t *testing.T) string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: run hack/ensure-chromium.sh (installs Debian's chromium as root) or set $CHROMIUM")
	return ""
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestPortalPageFiltersByPromoCode(t *testing.T) {
	browserPath := chromium(t)
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // building the binaries takes most of it on a busy machine
	defer cancel()
	if err := devstack.Build(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	s, err := devstack.Start(ctx, devstack.Options{Root: root, Dir: t.TempDir(), Out: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop() }()
	if out, err := s.Kubectl(ctx, nil, "apply", "-k", filepath.Join(root, "config", "samples")); err != nil {
		t.Fatal(out, err)
	}
	if err := s.WaitReconciled(ctx); err != nil {
		t.Fatal(err)
	}
	tracker := s.Trackers["tracker"].URL
	if err := devstack.WaitServable(ctx, tracker, "PROMO22", 0); err != nil {
		t.Fatal(err)
	}
	for _, q := range []url.Values{
		{"code": {"PROMO22"}, "amount": {"100"}, "adv_order_id": {"b-1"}},
		{"code": {"promo22"}, "offer_id": {"8"}, "amount": {"50.5"}, "adv_order_id": {"b-2"}},
		{"code": {"VIP10"}, "token": {"s3cret-vip"}, "amount": {"30"}, "adv_order_id": {"b-3"}},
	} {
		r, err := devstack.Track(ctx, tracker, q)
		if err != nil || r.Status != "approved" {
			t.Fatalf("postback %v: %+v %v", q, r, err)
		}
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	type table struct {
		Headers []string   `json:"headers"`
		Rows    [][]string `json:"rows"`
	}
	const readTables = `(() => {
	  const read = id => ({
	    headers: [...document.querySelectorAll('#' + id + ' thead th')].map(th => th.textContent.trim()),
	    rows: [...document.querySelectorAll('#' + id + ' tbody tr')].map(tr => [...tr.cells].map(td => td.textContent.trim())),
	  });
	  return {tx: read('transactions-table'), codes: read('codes-table')};
	})()`
	type tablesT struct {
		Tx    table `json:"tx"`
		Codes table `json:"codes"`
	}
	err = chromedp.Do(bctx,
		chromedp.Navigate(s.PortalURL),
		chromedp.WaitVisible(`input[name=token]`),
		chromedp.SendKeys(`input[name=token]`, s.PortalToken),
		chromedp.Submit(`input[name=token]`),
		chromedp.WaitVisible(`#transactions-table`),
		chromedp.SetValue(`input[name=promo_code]`, "promo22"),
		chromedp.Submit(`input[name=promo_code]`),
		// The filtered page renders the filter back into the form.
		chromedp.WaitVisible(`input[name=promo_code][value="promo22"]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := chromedp.Run(bctx, chromedp.Evaluate[tablesT](readTables))
	if err != nil {
		t.Fatal(err)
	}
	csv, err := chromedp.Run(bctx, chromedp.AttributeValue(`a[download]`, "href"))
	if err != nil {
		t.Fatal(err)
	}
	csvHref := csv.Value
	screenshot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "portal.png")
	if dst := os.Getenv("PORTAL_SCREENSHOT"); dst != "" {
		shot = dst
	}
	if err := os.WriteFile(shot, screenshot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(screenshot))

	col := slices.Index(tables.Tx.Headers, "Promo Code")
	offerCol := slices.Index(tables.Tx.Headers, "Offer")
	amountCol := slices.Index(tables.Tx.Headers, "Amount")
	if col < 0 || offerCol < 0 || amountCol < 0 {
		t.Fatalf("transactions table headers %v lack Promo Code, Offer or Amount", tables.Tx.Headers)
	}
	if len(tables.Tx.Rows) != 2 {
		t.Fatalf("filtered by promo22: %d rows %v, want the 2 PROMO22 conversions", len(tables.Tx.Rows), tables.Tx.Rows)
	}
	var got []string
	for _, r := range tables.Tx.Rows {
		if r[col] != "PROMO22" {
			t.Fatalf("row %v: Promo Code %q, want PROMO22", r, r[col])
		}
		got = append(got, r[offerCol]+":"+r[amountCol])
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"7:100", "8:50.5"}) { // newest first: offer 8's came second
		t.Fatalf("offer:amount %v, want [7:100 8:50.5]", got)
	}
	if tables.Tx.Rows[0][offerCol] != "8" {
		t.Fatalf("newest first: first row is offer %s, want 8", tables.Tx.Rows[0][offerCol])
	}
	var codes []string
	for _, r := range tables.Codes.Rows {
		codes = append(codes, r[0]+"@"+r[1])
	}
	if !slices.Equal(codes, []string{"PROMO22@7", "PROMO22@8"}) {
		t.Fatalf("promo codes table %v, want PROMO22 on offers 7 and 8", tables.Codes.Rows)
	}
	if !strings.Contains(csvHref, "format=csv") || !strings.Contains(csvHref, "promo_code=promo22") {
		t.Fatalf("CSV link %q does not carry the filter", csvHref)
	}

	checkReportAndHistory(ctx, t, s, bctx)
}

// checkReportAndHistory: a pending conversion declined by a later postback
// (SPEC §3), and two conversions from earlier days, written to the database
// directly (a tracker records only "now"). Then, in the browser: the
// Performance by promo code section — its table and its SVG chart, with one
// series per code and a point per day with conversions — filtered by offer;
// and the declined conversion's status history, opened from its row.
func checkReportAndHistory(ctx context.Context, t *testing.T, s *devstack.Stack, bctx context.Context) {
	tracker := s.Trackers["tracker"].URL
	r, err := devstack.Track(ctx, tracker, url.Values{"code": {"PROMO22"}, "amount": {"20"}, "adv_order_id": {"b-4"}, "conv_status": {"pending"}})
	if err != nil || r.Status != "pending" {
		t.Fatalf("pending postback: %+v %v", r, err)
	}
	declined, err := devstack.Track(ctx, tracker, url.Values{"code": {"PROMO22"}, "adv_order_id": {"b-4"}, "conv_status": {"declined"}})
	if err != nil || declined.Status != "declined" || declined.Reason != "status_changed" || declined.ConversionID != r.ConversionID {
		t.Fatalf("declining postback: %+v %v", declined, err)
	}
	db, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for _, back := range []struct {
		days                   int
		code, currency, amount string
		offer, affiliate       int64
	}{{2, "PROMO22", "USD", "1.00", 7, 42}, {1, "VIP10", "EUR", "3.00", 9, 42}} {
		if _, err := db.Exec(ctx, `INSERT INTO conversions (id, created_at, updated_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id,
  status, amount, payout, revenue, currency, source)
VALUES (gen_random_uuid(), $1, $1, $2, 'shop/backdated', $3, $4, 1, 'approved', $5::numeric, 0.10, 0.20, $6, 'woocommerce')`,
			today.AddDate(0, 0, -back.days).Add(12*time.Hour), back.code, back.offer, back.affiliate, back.amount, back.currency); err != nil {
			t.Fatal(err)
		}
	}

	type series struct {
		Code   string   `json:"code"`
		Total  string   `json:"total"`
		Points int      `json:"points"`
		Marks  []string `json:"marks"`
		Length float64  `json:"length"`
		Color  string   `json:"color"`
	}
	type report struct {
		Headers []string   `json:"headers"`
		Rows    [][]string `json:"rows"`
		SVG     bool       `json:"svg"`
		Title   string     `json:"title"`
		Legend  []string   `json:"legend"`
		Series  []series   `json:"series"`
		Width   float64    `json:"width"`
		CSV     string     `json:"csv"`
	}
	// What the browser made of the page: the table's cells, and the chart as
	// rendered SVG (an SVGSVGElement, polylines with a drawn length).
	const readReport = `(() => {
	  const svg = document.querySelector('#promo-report figure svg');
	  return {
	    headers: [...document.querySelectorAll('#report-table thead th')].map(th => th.textContent.trim()),
	    rows: [...document.querySelectorAll('#report-table tbody tr')].map(tr => [...tr.cells].map(td => td.textContent.trim())),
	    svg: svg instanceof SVGSVGElement,
	    title: svg ? svg.querySelector('title').textContent : '',
	    legend: svg ? [...svg.querySelectorAll('g.legend text')].map(t => t.textContent) : [],
	    series: svg ? [...svg.querySelectorAll('g.series')].map(g => ({
	      code: g.dataset.code, total: g.dataset.total,
	      points: g.querySelector('polyline').points.numberOfItems,
	      marks: [...g.querySelectorAll('circle')].map(c => c.dataset.date + ':' + c.dataset.conversions),
	      length: g.querySelector('polyline').getTotalLength(),
	      color: getComputedStyle(g.querySelector('polyline')).stroke,
	    })) : [],
	    width: svg ? svg.getBoundingClientRect().width : 0,
	    csv: document.querySelector('#report-csv').getAttribute('href'),
	  };
	})()`
	day := func(back int) string { return today.AddDate(0, 0, -back).Format(time.DateOnly) }

	err = chromedp.Do(bctx,
		chromedp.Click(`a[href="/reports/promo-codes"]`),
		chromedp.WaitVisible(`#promo-report svg#promo-chart`),
	)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := chromedp.Run(bctx, chromedp.Evaluate[report](readReport))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Promo Code", "Currency", "Conversions", "Approved", "Pending", "Declined", "Amount", "Payout", "Revenue", "Declined amount"}; !slices.Equal(rep.Headers, want) {
		t.Fatalf("report headers %v", rep.Headers)
	}
	// PROMO22 in dollars: b-1 (offer 7, 100: payout 10%, revenue 8.00), b-2
	// (offer 8, 50.5: payout 12.5%, revenue 20%), the backdated 1.00 and b-4,
	// declined: its 20 only in Declined amount. VIP10: b-3 in euros (fixed
	// 20.00 and 35.00) and the backdated 3.00.
	wantRows := [][]string{
		{"PROMO22", "USD", "4", "3", "0", "1", "151.50", "16.4125", "18.30", "20"},
		{"VIP10", "EUR", "2", "2", "0", "0", "33.00", "20.10", "35.20", "0"},
	}
	if !reflect.DeepEqual(rep.Rows, wantRows) {
		t.Errorf("report rows\n got %q\nwant %q", rep.Rows, wantRows)
	}
	if !rep.SVG || rep.Width < 300 || !strings.HasPrefix(rep.Title, "Conversions per day by promo code, "+day(29)+" to "+day(0)) {
		t.Errorf("chart: svg %v, width %.0f, title %q", rep.SVG, rep.Width, rep.Title)
	}
	if !slices.Equal(rep.Legend, []string{"PROMO22 (4)", "VIP10 (2)"}) {
		t.Errorf("legend %q", rep.Legend)
	}
	wantMarks := map[string][]string{
		"PROMO22": {day(2) + ":1", day(0) + ":3"},
		"VIP10":   {day(1) + ":1", day(0) + ":1"},
	}
	if len(rep.Series) != 2 {
		t.Fatalf("chart series %+v, want PROMO22 and VIP10", rep.Series)
	}
	for i, sr := range rep.Series {
		if sr.Code != []string{"PROMO22", "VIP10"}[i] || sr.Points != 30 || sr.Length <= 0 || !slices.Equal(sr.Marks, wantMarks[sr.Code]) {
			t.Errorf("series %d: %+v, want %s with 30 points and marks %v", i, sr, []string{"PROMO22", "VIP10"}[i], wantMarks[sr.Code])
		}
	}
	if rep.Series[0].Color == rep.Series[1].Color {
		t.Errorf("both series drawn in %s", rep.Series[0].Color)
	}
	reportShot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "portal-report.png")
	if dst := os.Getenv("PORTAL_REPORT_SCREENSHOT"); dst != "" {
		shot = dst
	}
	if err := os.WriteFile(shot, reportShot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("report screenshot: %s (%d bytes)", shot, len(reportShot))

	// Filtered by offer 8: only b-2, and the CSV link carries the filter.
	err = chromedp.Do(bctx,
		chromedp.SetValue(`#promo-report input[name=offer_id]`, "8"),
		chromedp.Submit(`#promo-report input[name=offer_id]`),
		chromedp.WaitVisible(`#promo-report input[name=offer_id][value="8"]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err = chromedp.Run(bctx, chromedp.Evaluate[report](readReport)); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"PROMO22", "USD", "1", "1", "0", "0", "50.5", "6.3125", "10.1", "0"}}; !reflect.DeepEqual(rep.Rows, want) {
		t.Errorf("offer 8: rows %q, want %q", rep.Rows, want)
	}
	if len(rep.Series) != 1 || !slices.Equal(rep.Series[0].Marks, []string{day(0) + ":1"}) {
		t.Errorf("offer 8: series %+v", rep.Series)
	}
	if !strings.Contains(rep.CSV, "format=csv") || !strings.Contains(rep.CSV, "offer_id=8") {
		t.Errorf("report CSV link %q does not carry the filter", rep.CSV)
	}

	// The declined conversion's history, from its row on the Transactions page.
	type history struct {
		Status string     `json:"status"`
		Rows   [][]string `json:"rows"`
	}
	// The Source column and filter: the two rows a shop's webhook would have made.
	type sourceRows struct {
		Headers []string   `json:"headers"`
		Rows    [][]string `json:"rows"`
	}
	err = chromedp.Do(bctx,
		chromedp.Click(`header a[href="/"]`),
		chromedp.WaitVisible(`#transactions-table`),
		chromedp.SetValue(`select[name=source]`, "woocommerce"),
		chromedp.Submit(`select[name=source]`),
		chromedp.WaitReady(`select[name=source] option[value=woocommerce][selected]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	src, err := chromedp.Run(bctx, chromedp.Evaluate[sourceRows](`({
	  headers: [...document.querySelectorAll('#transactions-table thead th')].map(th => th.textContent.trim()),
	  rows: [...document.querySelectorAll('#transactions-table tbody tr')].map(tr => [...tr.cells].map(td => td.textContent.trim())),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	srcCol, codeCol := slices.Index(src.Headers, "Source"), slices.Index(src.Headers, "Promo Code")
	var bySource []string
	for _, row := range src.Rows {
		if srcCol >= 0 && codeCol >= 0 && srcCol < len(row) {
			bySource = append(bySource, row[codeCol]+":"+row[srcCol])
		}
	}
	if !slices.Equal(bySource, []string{"VIP10:woocommerce", "PROMO22:woocommerce"}) {
		t.Errorf("source=woocommerce: rows %q, want VIP10 and PROMO22 from woocommerce", src.Rows)
	}

	err = chromedp.Do(bctx,
		chromedp.Click(`a.button[href="/"]`),                            // Clear
		chromedp.WaitNotPresent(`select[name=source] option[selected]`), // the cleared page
		chromedp.SetValue(`select[name=status]`, "declined"),
		chromedp.Submit(`select[name=status]`),
		chromedp.WaitReady(`select[name=status] option[value=declined][selected]`), // the filtered page (an option is never "visible")
		chromedp.Click(`#transactions-table a[href="/transactions/`+r.ConversionID+`"]`),
		chromedp.WaitVisible(`#history-table`),
	)
	if err != nil {
		t.Fatal(err)
	}
	h, err := chromedp.Run(bctx, chromedp.Evaluate[history](`({
	  status: document.querySelector('#conversion-status').textContent.trim(),
	  rows: [...document.querySelectorAll('#history-table tbody tr')].map(tr => [...tr.cells].slice(1).map(td => td.textContent.trim())),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"—", "pending", "postback (recorded)"}, {"pending", "declined", "postback"}}; h.Status != "declined" || !reflect.DeepEqual(h.Rows, want) {
		t.Errorf("history: status %q, rows %q, want declined and %q", h.Status, h.Rows, want)
	}
}
