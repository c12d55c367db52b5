package routing

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func ptrTo(s string) *string { return &s }

func offer(ns, name string, id int64, enabled bool, created time.Duration) *OfferSpec {
	ref := Ref{Namespace: ns, Name: name}
	return &OfferSpec{
		Ref: ref, Rank: Rank{Created: t0.Add(created), Ref: ref},
		ID: id, Title: name, Currency: "USD", PromoCodesEnabled: enabled,
		Goals: []GoalSpec{
			{ID: 1, Alias: "sale", Default: true, Status: "approved",
				Payout: Money{Percent: ptrTo("10")}, Revenue: Money{Fixed: ptrTo("8.00")}},
			{ID: 2, Alias: "lead", Status: "pending",
				Payout: Money{Fixed: ptrTo("1.50")}, Revenue: Money{Fixed: ptrTo("2.00")}},
		},
	}
}

func code(ns, name, c, offerName string, affiliate int64, created time.Duration) *Claim {
	ref := Ref{Namespace: ns, Name: name}
	return &Claim{
		Folded: Fold(c), Code: c, Ref: ref, OfferRef: Ref{Namespace: ns, Name: offerName}, AffiliateID: affiliate,
		Rank: Rank{Created: t0.Add(created), Ref: ref},
	}
}

func dated(c *Claim, start, end time.Time) *Claim {
	c.Start, c.End = start, end
	return c
}

// streamed is the snapshot tbl writes with WriteSnapshot, decoded.
func streamed(t *testing.T, tbl *Table) Snapshot {
	t.Helper()
	var buf bytes.Buffer
	if err := tbl.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(buf.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}
