package tracker

import (
	"strings"
	"testing"
)

func wooOrderWith(t *testing.T, status string) []byte {
	t.Helper()
	return []byte(strings.Replace(string(fixture(t, "woocommerce/order.json")), `"status": "pending"`, `"status": "`+status+`"`, 1))
}

func TestWooCommerceOrderLifecycle(t *testing.T) {
	e := start(t, freshDB(t), shopTable())

	// order.created, pending: a pending conversion; freeship is not ours.
	code, r, raw := send(t, e.url, wooHook("order.created", wooOrderWith(t, "pending")))
	if code != 200 || len(r.Recorded) != 1 || r.OrderID != "727" {
		t.Fatalf("order.created: %d %s", code, raw)
	}
	rec := r.Recorded[0]
	if rec.Code != "PROMO22" || rec.OfferID != 7 || rec.Status != "pending" || rec.Amount != "16.20" {
		t.Fatalf("recorded %+v", rec)
	}
	if len(r.Ignored) != 1 || r.Ignored[0] != (shopIgnored{Code: "freeship", Reason: "unknown_code"}) {
		t.Fatalf("ignored %+v", r.Ignored)
	}
	want := storedConversion{ID: rec.ConversionID, Code: "PROMO22", Ref: "shop/promo22-summer", Status: "pending", Amount: "16.20",
		Payout: "1.62", Revenue: "8.00", Currency: "USD", Order: "727", Source: "woocommerce", Offer: 7, Affiliate: 42, Goal: 1}
	if got := conversionsOf(t, e.db, "727"); len(got) != 1 || got[0] != want {
		t.Fatalf("rows %+v, want %+v", got, want)
	}

	// The same status again (an order.updated for a note): a duplicate.
	code, r, raw = send(t, e.url, wooHook("order.updated", wooOrderWith(t, "on-hold")))
	if code != 200 || len(r.Duplicates) != 1 || r.Duplicates[0].Code != "PROMO22" || len(r.Changed) != 0 || len(r.Recorded) != 0 {
		t.Fatalf("on-hold: %d %s", code, raw)
	}

	// Paid: pending → approved (the goal's status).
	code, r, raw = send(t, e.url, wooHook("order.updated", wooOrderWith(t, "processing")))
	if code != 200 || len(r.Changed) != 1 || r.Changed[0] != (shopChange{Code: "PROMO22", ConversionID: rec.ConversionID, OfferID: 7, GoalID: 1, From: "pending", To: "approved", Result: "changed"}) {
		t.Fatalf("processing: %d %s", code, raw)
	}
	// Completed is still approved.
	if code, r, raw = send(t, e.url, wooHook("order.updated", wooOrderWith(t, "completed"))); code != 200 || len(r.Duplicates) != 1 || len(r.Changed) != 0 {
		t.Fatalf("completed: %d %s", code, raw)
	}
	// Refunded: approved → declined.
	code, r, raw = send(t, e.url, wooHook("order.updated", wooOrderWith(t, "refunded")))
	if code != 200 || len(r.Changed) != 1 || r.Changed[0].From != "approved" || r.Changed[0].To != "declined" || r.Changed[0].Result != "changed" {
		t.Fatalf("refunded: %d %s", code, raw)
	}
	// Reopened after the refund: §3 refuses declined → approved; reported, 200.
	code, r, raw = send(t, e.url, wooHook("order.updated", wooOrderWith(t, "processing")))
	if code != 200 || len(r.Changed) != 1 || r.Changed[0].Result != "invalid_transition" || r.Changed[0].From != "declined" || r.Changed[0].To != "approved" {
		t.Fatalf("reopened: %d %s", code, raw)
	}
	got := conversionsOf(t, e.db, "727")
	if len(got) != 1 || got[0].Status != "declined" {
		t.Fatalf("rows after the lifecycle %+v", got)
	}
	if h := historyOf(t, e.db, rec.ConversionID); strings.Join(h, ",") != "pending>approved woocommerce,approved>declined woocommerce" {
		t.Fatalf("history %v", h)
	}
}

func TestWooCommerceOutOfOrderAndTotals(t *testing.T) {
	e := start(t, freshDB(t), shopTable())
	// An order first seen cancelled (deliveries are queued and may come out
	// of order): a declined conversion, which the late order.created cannot reopen.
	order := []byte(strings.ReplaceAll(string(wooOrderWith(t, "cancelled")), `"id": 727`, `"id": 728`))
	code, r, raw := send(t, e.url, wooHook("order.updated", order))
	if code != 200 || len(r.Recorded) != 1 || r.Recorded[0].Status != "declined" {
		t.Fatalf("first seen cancelled: %d %s", code, raw)
	}
	late := []byte(strings.ReplaceAll(string(wooOrderWith(t, "pending")), `"id": 727`, `"id": 728`))
	code, r, raw = send(t, e.url, wooHook("order.created", late))
	if code != 200 || len(r.Changed) != 1 || r.Changed[0].Result != "invalid_transition" {
		t.Fatalf("late order.created: %d %s", code, raw)
	}
	if got := conversionsOf(t, e.db, "728"); len(got) != 1 || got[0].Status != "declined" {
		t.Fatalf("rows %+v", got)
	}
}
