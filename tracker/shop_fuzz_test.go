package tracker

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/shopspring/decimal"
)

// The body decoders never panic; a decoded order re-encodes to JSON that
// decodes to the same order; an order accepted for recording has an id of
// digits and an exact decimal amount.

func FuzzShopifyOrder(f *testing.F) {
	for _, name := range []string{"shopify/orders_create.json", "shopify/orders_cancelled.json", "shopify/refunds_create.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"id": "820982911946154508", "current_subtotal_price": "1.5", "discount_codes": [{"code": "A"}, null]}`))
	f.Add([]byte(`{"id": 1e3, "discount_codes": null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := decodeShopifyOrder(body)
		if err == nil {
			roundTrip(t, o, decodeShopifyOrder)
			for _, amount := range []string{"subtotal", "total"} {
				if so, err := o.order(amount); err == nil {
					checkAccepted(t, so)
				}
			}
		}
		if rf, err := decodeShopifyRefund(body); err == nil {
			roundTrip(t, rf, decodeShopifyRefund)
			if id, err := checkOrderID("order_id", rf.OrderID); err == nil && !orderIDRe.MatchString(id) {
				t.Fatalf("accepted order_id %q", id)
			}
		}
	})
}

func FuzzWooCommerceOrder(f *testing.F) {
	f.Add(fixture(f, "woocommerce/order.json"))
	f.Add([]byte(`{"id": 1, "status": "processing", "line_items": [{"total": "0.1"}, {"total": "0.20"}], "coupon_lines": [{"code": "x"}]}`))
	f.Add([]byte(`{"id": 2, "line_items": [{"total": "999999999999999999.999999"}, {"total": "1"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := decodeWooOrder(body)
		if err != nil {
			return
		}
		roundTrip(t, o, decodeWooOrder)
		for _, amount := range []string{"subtotal", "total"} {
			if so, err := o.order(amount); err == nil {
				checkAccepted(t, so)
			}
		}
		_, _, _ = wooStatus(o.Status)
	})
}

func roundTrip[T any](t *testing.T, v T, decode func([]byte) (T, error)) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding %+v: %v", v, err)
	}
	again, err := decode(b)
	if err != nil {
		t.Fatalf("decoding the re-encoded %s: %v", b, err)
	}
	if !reflect.DeepEqual(normalizeNumbers(v), normalizeNumbers(again)) {
		t.Fatalf("re-encoded order differs:\n%+v\n%+v", v, again)
	}
}

// normalizeNumbers: an absent json.Number ("") encodes as 0.
func normalizeNumbers[T any](v T) T {
	switch o := any(&v).(type) {
	case *shopifyOrder:
		if o.ID == "" {
			o.ID = "0"
		}
	case *shopifyRefund:
		if o.OrderID == "" {
			o.OrderID = "0"
		}
	case *wooOrder:
		if o.ID == "" {
			o.ID = "0"
		}
	}
	return v
}

func checkAccepted(t *testing.T, o shopOrder) {
	t.Helper()
	if !orderIDRe.MatchString(o.ID) {
		t.Fatalf("accepted order id %q", o.ID)
	}
	d, err := decimal.NewFromString(o.Amount)
	if err != nil || d.IsNegative() || !amountRe.MatchString(o.Amount) {
		t.Fatalf("accepted amount %q (%v)", o.Amount, err)
	}
	if o.Currency != "" && !currencyRe.MatchString(o.Currency) {
		t.Fatalf("accepted currency %q", o.Currency)
	}
}
