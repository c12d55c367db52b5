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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
}
