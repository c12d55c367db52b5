package portal

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// change records a status change as the tracker does: the history row and
// the conversion's new status and updated_at, in one transaction.
func (f *fixture) change(t *testing.T, id string, at time.Time, from, to, source string) {
	t.Helper()
	ctx := context.Background()
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO conversion_status_changes (conversion_id, changed_at, from_status, to_status, source)
VALUES ($1, $2, $3, $4, $5)`, id, at, from, to, source); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE conversions SET status = $2, updated_at = $3 WHERE id = $1`, id, to, at); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTransactionHistory(t *testing.T) {
	f := newFixture(t)
	ids := f.add(t,
		conv{at: nov20, code: "PROMO22", status: "pending", amount: "100", payout: "10", revenue: "20", source: "shopify"},
		conv{at: nov20.Add(time.Minute), code: "PROMO22", status: "approved", amount: "5", payout: "1", revenue: "2"},
	)
	changed, untouched := ids[0], ids[1]
	// Inserted out of order: the history is ordered by changed_at, not by insertion.
	f.change(t, changed, nov20.Add(2*time.Hour), "pending", "approved", "postback")
	f.change(t, changed, nov20.Add(26*time.Hour), "approved", "declined", "shopify")

	status, _, body := f.get(t, "/api/v1/transactions/"+changed)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var d TransactionDetail
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	want := []StatusChange{
		{ChangedAt: nov20.Add(2 * time.Hour), FromStatus: "pending", ToStatus: "approved", Source: "postback"},
		{ChangedAt: nov20.Add(26 * time.Hour), FromStatus: "approved", ToStatus: "declined", Source: "shopify"},
	}
	if len(d.History) != 2 {
		t.Fatalf("history %+v", d.History)
	}
	for i := range want {
		if !d.History[i].ChangedAt.Equal(want[i].ChangedAt) || d.History[i].FromStatus != want[i].FromStatus ||
			d.History[i].ToStatus != want[i].ToStatus || d.History[i].Source != want[i].Source {
			t.Errorf("history[%d] = %+v, want %+v", i, d.History[i], want[i])
		}
	}
	if d.ID != changed || d.Status != "declined" || d.Source != "shopify" || d.Amount != "100" ||
		!d.CreatedAt.Equal(nov20) || !d.UpdatedAt.Equal(nov20.Add(26*time.Hour)) {
		t.Errorf("conversion %+v", d.Transaction)
	}
	// The raw JSON has the documented names, and an empty history is [] (not null).
	if !strings.Contains(string(body), `"history":[{"changed_at":"2026-11-20T11:30:00Z","from_status":"pending","to_status":"approved","source":"postback"}`) ||
		!strings.Contains(string(body), `"updated_at":"2026-11-21T11:30:00Z"`) {
		t.Errorf("body %s", body)
	}
	_, _, body = f.get(t, "/api/v1/transactions/"+untouched)
	if !strings.Contains(string(body), `"history":[]`) || !strings.Contains(string(body), `"updated_at":"2026-11-20T09:31:00Z"`) {
		t.Errorf("unchanged conversion: %s", body)
	}

	for _, tc := range []struct {
		id     string
		status int
		msg    string
	}{
		{"0191e8a0-0000-7000-8000-000000000000", 404, `{"error":"not_found","message":"no conversion has id 0191e8a0-0000-7000-8000-000000000000"}`},
		{"not-a-uuid", 400, `{"error":"bad_request","message":"id: must be a conversion id (a UUID such as 01a20ec8-d09f-7b94-ba55-a69edaf4feaa)"}`},
	} {
		status, _, body := f.get(t, "/api/v1/transactions/"+tc.id)
		if status != tc.status || strings.TrimSpace(string(body)) != tc.msg {
			t.Errorf("%s: %d %s, want %d %s", tc.id, status, body, tc.status, tc.msg)
		}
	}

	// The page: each row links to the conversion, whose page shows the history.
	_, _, body = f.get(t, "/?promo_code=promo22")
	if !strings.Contains(string(body), `<a href="/transactions/`+changed+`"`) || !strings.Contains(string(body), "2026-11-21 11:30:00") {
		t.Errorf("transactions page lacks the link or the Updated time")
	}
	status, _, body = f.get(t, "/transactions/"+changed)
	page := string(body)
	for _, s := range []string{
		`<dd id="conversion-status">declined</dd>`,
		`<caption>2 status changes, oldest first</caption>`,
		`<td>—</td><td>pending</td><td>shopify (recorded)</td>`,
		"<td>pending</td><td>approved</td><td>postback</td>",
		"<td>approved</td><td>declined</td><td>shopify</td>",
	} {
		if status != 200 || !strings.Contains(page, s) {
			t.Errorf("conversion page (%d) lacks %s", status, s)
		}
	}
	if strings.Index(page, "<td>pending</td><td>approved</td>") > strings.Index(page, "<td>approved</td><td>declined</td>") {
		t.Errorf("conversion page: history not oldest first")
	}
	if status, _, _ := f.get(t, "/transactions/0191e8a0-0000-7000-8000-000000000000"); status != 404 {
		t.Errorf("page of an unknown conversion: %d", status)
	}
	if status, _, _ := f.get(t, "/transactions/nope"); status != 400 {
		t.Errorf("page of a malformed id: %d", status)
	}
}

func TestSourceFilterAndUpdatedAt(t *testing.T) {
	f := newFixture(t)
	ids := f.add(t,
		conv{at: nov20, code: "SHOP1", status: "approved", amount: "10", payout: "1", revenue: "2", source: "shopify"},
		conv{at: nov20.Add(time.Second), code: "SHOP1", status: "pending", amount: "20", payout: "2", revenue: "4", source: "woocommerce"},
		conv{at: nov20.Add(2 * time.Second), code: "SHOP1", status: "approved", amount: "30", payout: "3", revenue: "6", source: "img"},
		conv{at: nov20.Add(3 * time.Second), code: "SHOP1", status: "approved", amount: "40", payout: "4", revenue: "8"},
	)
	f.change(t, ids[1], nov20.Add(time.Hour), "pending", "declined", "woocommerce")
	for src, want := range map[string]int{"": 4, "shopify": 1, "woocommerce": 1, "img": 1, "postback": 1, "js": 0, "iframe": 0} {
		p := f.page(t, "source="+src)
		if len(p.Items) != want {
			t.Errorf("source=%s: %d, want %d", src, len(p.Items), want)
		}
		for _, tx := range p.Items {
			if src != "" && tx.Source != src {
				t.Errorf("source=%s: a %s row", src, tx.Source)
			}
		}
	}
	status, _, body := f.get(t, "/api/v1/transactions?source=amazon")
	if want := `{"error":"bad_request","message":"source: must be one of postback, js, img, iframe, shopify, woocommerce"}`; status != 400 || strings.TrimSpace(string(body)) != want {
		t.Errorf("source=amazon: %d %s", status, body)
	}
	if status, _, _ := f.get(t, "/?source=amazon"); status != 400 {
		t.Errorf("page with source=amazon: %d", status)
	}
	// The page shows the shop sources and keeps the filter.
	status, _, body = f.get(t, "/?source=woocommerce")
	page := string(body)
	if status != 200 || !strings.Contains(page, "<td>woocommerce</td>") || strings.Contains(page, "<td>shopify</td>") ||
		!strings.Contains(page, `<option value="woocommerce" selected>`) || !strings.Contains(page, "source=woocommerce") {
		t.Errorf("page filtered by woocommerce (%d)", status)
	}

	// updated_at: in the JSON, and the CSV's last column.
	p := f.page(t, "source=woocommerce")
	if !p.Items[0].UpdatedAt.Equal(nov20.Add(time.Hour)) || p.Items[0].Status != "declined" {
		t.Errorf("woocommerce row %+v", p.Items[0])
	}
	_, _, body = f.get(t, "/api/v1/transactions?promo_code=shop1", "Accept", "text/csv")
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 5 {
		t.Fatalf("csv %v %q", err, recs)
	}
	if last := len(recs[0]) - 1; recs[0][last] != "updated_at" || recs[3][last] != "2026-11-20T10:30:00Z" || recs[1][last] != "2026-11-20T09:30:03Z" {
		t.Errorf("csv updated_at: %q %q %q", recs[0], recs[1], recs[3])
	}
}
