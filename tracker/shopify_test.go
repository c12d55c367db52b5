package tracker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"promocodes.dev/promo-operator/internal/testutil/pgtest"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

// storedConversion is a conversions row as a shop delivery leaves it.
type storedConversion struct {
	ID, Code, Ref, Status, Amount, Payout, Revenue, Currency, Order, Source string
	Offer, Affiliate, Goal                                                  int64
}

func conversionsOf(t *testing.T, db *pgxpool.Pool, order string) []storedConversion {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT id::text, promo_code, promo_code_ref, status, amount::text, payout::text, revenue::text,
		currency, adv_order_id, source, offer_id, affiliate_id, goal_id FROM conversions WHERE adv_order_id = $1 ORDER BY offer_id, goal_id`, order)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedConversion
	for rows.Next() {
		var c storedConversion
		if err := rows.Scan(&c.ID, &c.Code, &c.Ref, &c.Status, &c.Amount, &c.Payout, &c.Revenue, &c.Currency, &c.Order, &c.Source,
			&c.Offer, &c.Affiliate, &c.Goal); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// historyOf is a conversion's status changes as "from>to source" in order.
func historyOf(t *testing.T, db *pgxpool.Pool, id string) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT from_status || '>' || to_status || ' ' || source FROM conversion_status_changes
		WHERE conversion_id = $1 ORDER BY changed_at, id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestShopifyOrdersRecordOnce(t *testing.T) {
	e := start(t, freshDB(t), shopTable())
	create := fixture(t, "shopify/orders_create.json")

	// Two codes, one ours: one conversion, the other code ignored.
	code, r, raw := send(t, e.url, shopifyHook("shop/acme", "orders/create", create))
	if code != 200 || len(r.Recorded) != 1 || len(r.Duplicates) != 0 || r.OrderID != fixtureOrderID {
		t.Fatalf("orders/create: %d %s", code, raw)
	}
	rec := r.Recorded[0]
	if rec.Code != "PROMO22" || rec.OfferID != 7 || rec.GoalID != 1 || rec.Status != "approved" || rec.Amount != "358.00" || rec.Currency != "USD" {
		t.Fatalf("recorded %+v", rec)
	}
	if len(r.Ignored) != 1 || r.Ignored[0] != (shopIgnored{Code: "WELCOME10", Reason: "unknown_code"}) {
		t.Fatalf("ignored %+v", r.Ignored)
	}
	want := storedConversion{ID: rec.ConversionID, Code: "PROMO22", Ref: "shop/promo22-summer", Status: "approved", Amount: "358.00",
		Payout: "35.8", Revenue: "8.00", Currency: "USD", Order: fixtureOrderID, Source: "shopify", Offer: 7, Affiliate: 42, Goal: 1}
	if got := conversionsOf(t, e.db, fixtureOrderID); len(got) != 1 || got[0] != want {
		t.Fatalf("rows %+v, want %+v", got, want)
	}

	// The same order again, and by orders/paid: duplicates of that row.
	for _, topic := range []string{"orders/create", "orders/paid"} {
		code, r, raw = send(t, e.url, shopifyHook("shop/acme", topic, create))
		if code != 200 || len(r.Recorded) != 0 || len(r.Duplicates) != 1 || r.Duplicates[0].ConversionID != rec.ConversionID {
			t.Fatalf("%s again: %d %s", topic, code, raw)
		}
	}
	if got := conversionsOf(t, e.db, fixtureOrderID); len(got) != 1 {
		t.Fatalf("one order, %d rows", len(got))
	}

	// A code that is only on the storefront's second offer.
	code, r, raw = send(t, e.url, shopifyHook("shop/acme", "orders/paid", withOrder(create, "5001", "WELCOME10", "winter5")))
	if code != 200 || len(r.Recorded) != 1 || r.Recorded[0].OfferID != 8 || r.Recorded[0].Code != "WINTER5" {
		t.Fatalf("second offer: %d %s", code, raw)
	}
	if got := conversionsOf(t, e.db, "5001"); len(got) != 1 || got[0].Affiliate != 43 || got[0].Offer != 8 || got[0].Source != "shopify" {
		t.Fatalf("second offer rows %+v", got)
	}

	// Two codes of ours on two offers: two conversions.
	code, r, raw = send(t, e.url, shopifyHook("shop/acme", "orders/create", withOrder(create, "5002", "WINTER5", "PROMO22")))
	if code != 200 || len(r.Recorded) != 2 {
		t.Fatalf("two codes of ours: %d %s", code, raw)
	}

	// amount: total records current_total_price (and a percent payout of it).
	body := withOrder(create, "5003")
	code, r, raw = send(t, e.url, shopifyHook("shop/acme-total", "orders/create", body).with("X-Shopify-Shop-Domain", "acme-total.myshopify.com"))
	if code != 200 || len(r.Recorded) != 1 || r.Recorded[0].Amount != "396.64" {
		t.Fatalf("amount total: %d %s", code, raw)
	}
	if got := conversionsOf(t, e.db, "5003"); len(got) != 1 || got[0].Amount != "396.64" || got[0].Payout != "39.664" {
		t.Fatalf("amount total rows %+v", got)
	}
}

func TestShopifyRefundAndCancellationDecline(t *testing.T) {
	e := start(t, freshDB(t), shopTable())
	create := fixture(t, "shopify/orders_create.json")
	if code, r, raw := send(t, e.url, shopifyHook("shop/acme", "orders/create", create)); code != 200 || len(r.Recorded) != 1 {
		t.Fatalf("orders/create: %d %s", code, raw)
	}
	id := conversionsOf(t, e.db, fixtureOrderID)[0].ID

	// A refund (its order_id) after approval: declined, with history.
	refund := fixture(t, "shopify/refunds_create.json")
	code, r, raw := send(t, e.url, shopifyHook("shop/acme", "refunds/create", refund))
	if code != 200 || len(r.Changed) != 1 || r.Changed[0] != (shopChange{ConversionID: id, OfferID: 7, GoalID: 1, From: "approved", To: "declined", Result: "changed"}) {
		t.Fatalf("refunds/create: %d %s", code, raw)
	}
	if got := conversionsOf(t, e.db, fixtureOrderID); got[0].Status != "declined" {
		t.Fatalf("after the refund: %+v", got)
	}
	if h := historyOf(t, e.db, id); strings.Join(h, ",") != "approved>declined shopify" {
		t.Fatalf("history %v", h)
	}
	// A second refund of the same order changes nothing.
	code, r, raw = send(t, e.url, shopifyHook("shop/acme", "refunds/create", refund))
	if code != 200 || len(r.Changed) != 0 || len(r.Duplicates) != 1 || r.Duplicates[0].Status != "declined" {
		t.Fatalf("second refund: %d %s", code, raw)
	}

	// A cancellation declines another order's conversions, on both offers.
	if code, r, raw := send(t, e.url, shopifyHook("shop/acme", "orders/create", withOrder(create, "6001", "WINTER5", "PROMO22"))); code != 200 || len(r.Recorded) != 2 {
		t.Fatalf("orders/create: %d %s", code, raw)
	}
	code, r, raw = send(t, e.url, shopifyHook("shop/acme", "orders/cancelled", withOrder(fixture(t, "shopify/orders_cancelled.json"), "6001")))
	if code != 200 || len(r.Changed) != 2 || r.OrderID != "6001" {
		t.Fatalf("orders/cancelled: %d %s", code, raw)
	}
	for _, c := range conversionsOf(t, e.db, "6001") {
		if c.Status != "declined" || strings.Join(historyOf(t, e.db, c.ID), ",") != "approved>declined shopify" {
			t.Fatalf("cancelled order row %+v", c)
		}
	}
	// Cancelling an order without conversions: nothing to do, still 200.
	code, r, raw = send(t, e.url, shopifyHook("shop/acme", "orders/cancelled", withOrder(fixture(t, "shopify/orders_cancelled.json"), "6002")))
	if code != 200 || len(r.Changed) != 0 || len(r.Ignored) != 1 || r.Ignored[0].Reason != "order_not_recorded" {
		t.Fatalf("unknown order cancelled: %d %s", code, raw)
	}
}

// PostgreSQL down during a delivery: 503, so Shopify retries; the retry
// records exactly once.
func TestShopifyStorageDownThenRedelivered(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	own, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()
	e := start(t, own.URL, shopTable())
	create := fixture(t, "shopify/orders_create.json")
	if err := own.StopServer(); err != nil {
		t.Fatal(err)
	}
	code, r, raw := send(t, e.url, shopifyHook("shop/acme", "orders/create", create))
	if code != 503 || r.Status != "storage_unavailable" {
		t.Fatalf("storage down: %d %s", code, raw)
	}
	if err := own.StartServer(); err != nil {
		t.Fatal(err)
	}
	// Shopify retries until a 2xx; every retry before PostgreSQL is back is a 503.
	poll.Until(t, 30*time.Second, func() (bool, string) {
		code, r, raw = send(t, e.url, shopifyHook("shop/acme", "orders/create", create))
		return code != 503, fmt.Sprintf("still %d %s", code, raw)
	})
	if code != 200 || len(r.Recorded) != 1 {
		t.Fatalf("redelivery: %d %s", code, raw)
	}
	// Shopify may deliver once more (it saw no answer in time, say).
	if code, r, raw = send(t, e.url, shopifyHook("shop/acme", "orders/create", create)); code != 200 || len(r.Duplicates) != 1 {
		t.Fatalf("third delivery: %d %s", code, raw)
	}
	if got := conversionsOf(t, e.db, fixtureOrderID); len(got) != 1 || got[0].Source != "shopify" {
		t.Fatalf("rows %+v", got)
	}
}

// Shopify sends orders/create and orders/paid moments apart, and retries:
// deliveries of one order racing each other record it once.
func TestShopifyConcurrentDeliveriesRecordOnce(t *testing.T) {
	e := start(t, freshDB(t), shopTable())
	create := fixture(t, "shopify/orders_create.json")
	const n = 20
	replies := make(chan shopReplyBody, n)
	errs := make(chan string, n)
	for i := range n {
		topic := "orders/create"
		if i%2 == 1 {
			topic = "orders/paid"
		}
		go func() {
			code, r, raw, err := trySend(e.url, shopifyHook("shop/acme", topic, create))
			if err != nil || code != 200 {
				errs <- fmt.Sprintf("%d %s %v", code, raw, err)
				return
			}
			replies <- r
		}()
	}
	var recorded, duplicates int
	ids := map[string]bool{}
	for range n {
		select {
		case msg := <-errs:
			t.Fatal(msg)
		case r := <-replies:
			recorded += len(r.Recorded)
			duplicates += len(r.Duplicates)
			for _, c := range append(r.Recorded, r.Duplicates...) {
				ids[c.ConversionID] = true
			}
		}
	}
	if recorded != 1 || duplicates != n-1 || len(ids) != 1 {
		t.Fatalf("recorded %d, duplicates %d, conversion ids %v", recorded, duplicates, ids)
	}
	if got := conversionsOf(t, e.db, fixtureOrderID); len(got) != 1 || !ids[got[0].ID] {
		t.Fatalf("rows %+v", got)
	}
}
