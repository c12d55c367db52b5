package portal_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/poll"
	"promocodes.dev/promo-operator/internal/testutil/stacktest"
)

var injectManifests = fixtures.NamespaceYAML("inject") + "---\n" + fixtures.OfferYAML("inject", "shop", 910, true) + "---\n" +
	fixtures.PromoCodeYAML("inject", "inject1", "INJECT1", "shop", 5, "")

// TestFormulaFromAPixelIsNeutralisedInTheExport is the attack end to end:
// anyone sends adv_param1==HYPERLINK(...) through the public pixel and a
// postback of the real tracker, and the back office's CSV export from the
// real portal carries it as text, prefixed with a quote.
func TestFormulaFromAPixelIsNeutralisedInTheExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := stacktest.Start(t, ctx, devstack.Options{})
	if out, err := s.Kubectl(ctx, strings.NewReader(injectManifests), "apply", "-f", "-"); err != nil {
		t.Fatal(out, err)
	}
	tracker := s.Trackers["tracker"].URL
	if err := devstack.WaitServable(ctx, tracker, "INJECT1", 0); err != nil {
		t.Fatal(err)
	}
	const formula = `=HYPERLINK("http://x","y")`

	// The pixel: an <img> on the shop's thank-you page, open to anyone.
	pixel := url.Values{"code": {"INJECT1"}, "amount": {"10"}, "adv_param1": {formula}, "adv_param2": {"pixel"}, "return": {"img"}}
	resp, err := http.Get(tracker + "/track/promo?" + pixel.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
		t.Fatalf("pixel: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// A server-to-server postback.
	r, err := devstack.Track(ctx, tracker, url.Values{"code": {"INJECT1"}, "amount": {"10"}, "adv_order_id": {"@order-1"},
		"adv_param1": {formula}, "adv_param2": {"postback"}})
	if err != nil || r.Status != "approved" {
		t.Fatalf("postback: %+v %v", r, err)
	}

	var recs [][]string
	poll.Until(t, 30*time.Second, func() (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.PortalURL+"/api/v1/transactions?promo_code=inject1", nil)
		req.Header.Set("Authorization", "Bearer "+s.PortalToken)
		req.Header.Set("Accept", "text/csv")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		recs, err = csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("csv: %d %v", resp.StatusCode, err)
		}
		return len(recs) == 3, fmt.Sprintf("%d CSV records, want a header and 2 rows", len(recs))
	})
	col := map[string]int{}
	for i, c := range recs[0] {
		col[c] = i
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		via := rec[col["adv_param2"]]
		seen[via] = true
		if got := rec[col["adv_param1"]]; got != "'"+formula {
			t.Errorf("%s: adv_param1 %q in the CSV, want %q", via, got, "'"+formula)
		}
		if want := map[string]string{"pixel": "img", "postback": "postback"}[via]; rec[col["source"]] != want {
			t.Errorf("%s: source %q, want %q", via, rec[col["source"]], want)
		}
		if via == "postback" && rec[col["adv_order_id"]] != "'@order-1" {
			t.Errorf("postback: adv_order_id %q, want '@order-1", rec[col["adv_order_id"]])
		}
		if rec[col["amount"]] != "10" {
			t.Errorf("%s: amount %q, want 10 (numbers are not prefixed)", via, rec[col["amount"]])
		}
	}
	if !seen["pixel"] || !seen["postback"] {
		t.Fatalf("rows %q: want one from the pixel and one from the postback", recs[1:])
	}
}
