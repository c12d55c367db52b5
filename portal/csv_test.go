package portal

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"
)

func TestCSVCellsAreNeutralised(t *testing.T) {
	numeric := []bool{false, true}
	for _, c := range []struct{ text, number, wantText, wantNumber string }{
		{`=HYPERLINK("http://x","y")`, "1", `'=HYPERLINK("http://x","y")`, "1"},
		{"+1+1", "-5.00", "'+1+1", "-5.00"},
		{"-2+3", "-12", "'-2+3", "-12"},
		{"@SUM(A1)", "0.5", "'@SUM(A1)", "0.5"},
		{"\t=1", "19.99", "'\t=1", "19.99"},
		{"\r=1", "7", "'\r=1", "7"},
		{"a;=1+1", "-1+2", "a;=1+1", "'-1+2"}, // a numeric column that is not a number is treated as text
		{"a,=1", "-", "a,=1", "'-"},
		{`say "hi"`, "-.5", `say "hi"`, "'-.5"},
		{"", "", "", ""},
		{"'=1", "10.", "'=1", "10."},
	} {
		var b bytes.Buffer
		w := newCSVWriter(&b, numeric)
		if err := w.Write([]string{c.text, c.number}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		// Every cell is quoted, so a separator inside a value never starts a new cell.
		if !strings.HasPrefix(b.String(), `"`) || !strings.Contains(b.String(), `","`) {
			t.Errorf("%q: cells not quoted: %q", c.text, b.String())
		}
		rec, err := csv.NewReader(&b).Read()
		if err != nil {
			t.Fatalf("%q: %v", b.String(), err)
		}
		if len(rec) != 2 || rec[0] != c.wantText || rec[1] != c.wantNumber {
			t.Errorf("wrote %q, %q: read back %q, want %q, %q", c.text, c.number, rec, c.wantText, c.wantNumber)
		}
	}
}

// TestTransactionsCSVNeutralisesFormulas: caller text that a spreadsheet
// would run reaches the export prefixed with a quote, in every text column;
// negative payouts and revenues (numeric columns) stay numbers.
func TestTransactionsCSVNeutralisesFormulas(t *testing.T) {
	f := newFixture(t)
	_, err := f.db.Exec(context.Background(), `
INSERT INTO conversions (id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id, status,
                         amount, payout, revenue, currency, adv_order_id, adv_param1, adv_param2, adv_param3, adv_param4, adv_param5, source)
VALUES (gen_random_uuid(), $1, 'EVIL1', 'shop/evil1', 7, 42, 1, 'approved', 19.99, -2.00, -0.50, 'USD',
        '@order', '=HYPERLINK("http://x","y")', '+cmd', E'\tx', E'\r=1', 'a;=1,=2', 'postback')`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := f.get(t, "/api/v1/transactions?promo_code=evil1", "Accept", "text/csv")
	if status != 200 {
		t.Fatalf("csv: %d %s", status, body)
	}
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("csv %q: %d records, %v", body, len(recs), err)
	}
	got := map[string]string{}
	for i, c := range recs[0] {
		got[c] = recs[1][i]
	}
	for col, want := range map[string]string{
		"adv_order_id": "'@order",
		"adv_param1":   `'=HYPERLINK("http://x","y")`,
		"adv_param2":   "'+cmd",
		"adv_param3":   "'\tx",
		"adv_param4":   "'\r=1",
		"adv_param5":   "a;=1,=2",
		"amount":       "19.99",
		"payout":       "-2.00",
		"revenue":      "-0.50",
		"promo_code":   "EVIL1",
	} {
		if got[col] != want {
			t.Errorf("%s: %q, want %q", col, got[col], want)
		}
	}
}
