package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

const (
	shopifySecret  = "shpss_0a1b2c3d4e5f"
	wooSecret      = "wc-secret-9f8e7d"
	fixtureOrderID = "820982911946154508" // the fixtures' order id, beyond float64's exact integers
)

// shopTable: PROMO22 (affiliate 42) on summer (id 7), WINTER5 (affiliate
// 43) only on winter (id 8), OLD1 expired on summer, ELSE9 on an offer no
// storefront lists; storefronts acme (Shopify, summer then winter,
// subtotal), acme-total (Shopify, summer, total) and woo (WooCommerce,
// summer then winter, subtotal).
func shopTable() *routing.Table {
	old := testCode("old1", "OLD1", "summer", 42, created)
	old.Spec.EndDate = &metav1.Time{Time: created.Add(time.Minute)}
	snap := routing.Compile("shop-1",
		kube.Offers([]*trackingv1alpha1.Offer{testOffer("summer", 7, true, created), testOffer("winter", 8, true, created), testOffer("else", 9, true, created)}),
		kube.Claims([]*trackingv1alpha1.PromoCode{
			testCode("promo22-summer", "PROMO22", "summer", 42, created),
			testCode("winter5", "WINTER5", "winter", 43, created),
			old,
			testCode("else9", "ELSE9", "else", 44, created),
		}), nil)
	snap.Storefronts = []routing.Storefront{
		{Ref: "shop/acme", Platform: routing.PlatformShopify, Shop: "acme.myshopify.com", Secret: []byte(shopifySecret),
			OfferRefs: []string{"shop/summer", "shop/winter"}, Amount: "subtotal"},
		{Ref: "shop/acme-total", Platform: routing.PlatformShopify, Shop: "acme-total.myshopify.com", Secret: []byte(shopifySecret),
			OfferRefs: []string{"shop/summer"}, Amount: "total"},
		{Ref: "shop/woo", Platform: routing.PlatformWooCommerce, Shop: "https://shop.example.com/", Secret: []byte(wooSecret),
			OfferRefs: []string{"shop/summer", "shop/winter"}, Amount: "subtotal"},
	}
	return routing.NewTable(snap)
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shopReplyBody is a reply of either kind: a summary or an error.
type shopReplyBody struct {
	shopSummary
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type hook struct {
	method  string
	path    string
	headers map[string]string
	body    []byte
}

func shopifyHook(storefront, topic string, body []byte) hook {
	return hook{path: "/integrations/shopify/" + storefront, body: body, headers: map[string]string{
		"Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": "acme.myshopify.com",
		"X-Shopify-Hmac-Sha256": sign([]byte(shopifySecret), body), "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
		"X-Shopify-API-Version": "2025-07",
	}}
}

func wooHook(topic string, body []byte) hook {
	return hook{path: "/integrations/woocommerce/shop/woo", body: body, headers: map[string]string{
		"Content-Type": "application/json", "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Source": "https://shop.example.com/",
		"X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": strings.TrimPrefix(topic, "order."),
		"X-WC-Webhook-Signature": sign([]byte(wooSecret), body), "X-WC-Webhook-ID": "3", "X-WC-Webhook-Delivery-ID": "36e520ebabc2fa725092ff4a47acedf2",
		"User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)",
	}}
}

func (h hook) with(key, value string) hook {
	hd := map[string]string{}
	for k, v := range h.headers {
		hd[k] = v
	}
	if value == "" {
		delete(hd, key)
	} else {
		hd[key] = value
	}
	h.headers = hd
	return h
}

func send(t testing.TB, base string, h hook) (int, shopReplyBody, []byte) {
	t.Helper()
	code, r, raw, err := trySend(base, h)
	if err != nil {
		t.Fatal(err)
	}
	return code, r, raw
}

// trySend delivers h; an error is a transport error or a reply that is not JSON.
func trySend(base string, h hook) (int, shopReplyBody, []byte, error) {
	var r shopReplyBody
	method := h.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, base+h.path, bytes.NewReader(h.body))
	if err != nil {
		return 0, r, nil, err
	}
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, r, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, r, nil, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return resp.StatusCode, r, b, fmt.Errorf("reply %d %q: %w", resp.StatusCode, b, err)
	}
	return resp.StatusCode, r, b, nil
}

// withOrder returns a fixture with another order id and other codes.
func withOrder(body []byte, id string, codes ...string) []byte {
	s := strings.ReplaceAll(string(body), fixtureOrderID, id)
	if len(codes) > 0 {
		s = strings.Replace(s, `"WELCOME10"`, `"`+codes[0]+`"`, 1)
		s = strings.Replace(s, `"promo22"`, `"`+codes[1]+`"`, 1)
	}
	return []byte(s)
}

func TestShopDeliveriesRefused(t *testing.T) {
	e := start(t, freshDB(t), shopTable())
	create := fixture(t, "shopify/orders_create.json")
	order := fixture(t, "woocommerce/order.json")
	good := shopifyHook("shop/acme", "orders/create", create)
	badMoney := []byte(strings.Replace(string(create), `"current_subtotal_price": "358.00"`, `"current_subtotal_price": "3,58"`, 1))
	floatID := []byte(strings.Replace(string(create), `"id": 820982911946154508`, `"id": 8.2e17`, 1))
	big := append(append([]byte(`{"id": 1, "note": "`), bytes.Repeat([]byte("x"), maxShopBodyBytes)...), `"}`...)
	for _, tc := range []struct {
		name   string
		hook   hook
		code   int
		status string
	}{
		{"GET", hook{method: http.MethodGet, path: good.path}, 405, "method_not_allowed"},
		{"unknown storefront", shopifyHook("shop/nope", "orders/create", create), 404, "unknown_storefront"},
		{"platform mismatch", shopifyHook("shop/woo", "orders/create", create), 404, "unknown_storefront"},
		{"signature missing", good.with("X-Shopify-Hmac-Sha256", ""), 401, "invalid_signature"},
		{"signature of another secret", good.with("X-Shopify-Hmac-Sha256", sign([]byte("other"), create)), 401, "invalid_signature"},
		{"signature not base64", good.with("X-Shopify-Hmac-Sha256", "%%%"), 401, "invalid_signature"},
		{"body changed after signing", hook{path: good.path, headers: good.headers, body: withOrder(create, "1")}, 401, "invalid_signature"},
		{"wrong shop", good.with("X-Shopify-Shop-Domain", "evil.myshopify.com"), 404, "wrong_shop"},
		{"shop header missing", good.with("X-Shopify-Shop-Domain", ""), 404, "wrong_shop"},
		{"topic missing", good.with("X-Shopify-Topic", ""), 400, "bad_request"},
		{"malformed JSON", shopifyHook("shop/acme", "orders/create", create[:len(create)/2]), 400, "bad_request"},
		{"a JSON array", shopifyHook("shop/acme", "orders/create", []byte(`[1]`)), 400, "bad_request"},
		{"malformed money", shopifyHook("shop/acme", "orders/create", badMoney), 400, "bad_request"},
		{"float id", shopifyHook("shop/acme", "orders/create", floatID), 400, "bad_request"},
		{"id missing", shopifyHook("shop/acme", "orders/create", []byte(`{"current_subtotal_price": "1.00", "currency": "USD"}`)), 400, "bad_request"},
		{"refund without order_id", shopifyHook("shop/acme", "refunds/create", []byte(`{"id": 5}`)), 400, "bad_request"},
		{"too big", shopifyHook("shop/acme", "orders/create", big), 413, "payload_too_large"},
		{"woo signature missing", wooHook("order.created", order).with("X-WC-Webhook-Signature", ""), 401, "invalid_signature"},
		{"woo wrong site", wooHook("order.created", order).with("X-WC-Webhook-Source", "https://evil.example.com/"), 404, "wrong_shop"},
		{"woo site path differs", wooHook("order.created", order).with("X-WC-Webhook-Source", "https://shop.example.com/blog/"), 404, "wrong_shop"},
		{"woo malformed JSON", wooHook("order.created", []byte(`{"id": 727, "total": 27.42}`)), 400, "bad_request"},
		{"woo malformed line total", wooHook("order.created", []byte(strings.Replace(string(order), `"total": "5.40"`, `"total": "-5.40"`, 1))), 400, "bad_request"},
		{"woo unsigned ping to an unknown storefront", hook{path: "/integrations/woocommerce/shop/nope", body: []byte("webhook_id=3"),
			headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 404, "unknown_storefront"},
		{"woo unsigned body that is not the ping", hook{path: "/integrations/woocommerce/shop/woo", body: []byte("webhook_id=3&x=1"),
			headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 401, "invalid_signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r, raw := send(t, e.url, tc.hook)
			if code != tc.code || r.Status != tc.status {
				t.Fatalf("got %d %s, want %d %s", code, raw, tc.code, tc.status)
			}
			if r.Message == "" || r.Reason != tc.status {
				t.Fatalf("an error reply names its reason and says what to fix: %s", raw)
			}
		})
	}
	var n int
	if err := e.db.QueryRow(context.Background(), "SELECT count(*) FROM conversions").Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused deliveries stored %d rows (%v)", n, err)
	}
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{
		`promo_tracker_shop_deliveries_total{outcome="invalid_signature",platform="shopify",topic="none"} 4`,
		`promo_tracker_shop_deliveries_total{outcome="wrong_shop",platform="shopify",topic="orders/create"} 2`,
		`promo_tracker_shop_deliveries_total{outcome="bad_request",platform="woocommerce",topic="order.created"} 2`,
		`promo_tracker_shop_deliveries_total{outcome="unknown_storefront",platform="shopify",topic="none"} 2`,
	} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if bytes.Contains(metrics, []byte(shopifySecret)) || bytes.Contains(metrics, []byte(wooSecret)) {
		t.Error("a signing secret in the metrics")
	}
}

func TestShopDeliveriesWithNothingToRecord(t *testing.T) {
	e := start(t, freshDB(t), shopTable())
	create := fixture(t, "shopify/orders_create.json")
	for _, tc := range []struct {
		name    string
		hook    hook
		ignored []shopIgnored
	}{
		{"codes that are not ours", shopifyHook("shop/acme", "orders/create", withOrder(create, "11", "WELCOME10", "ELSE9")),
			[]shopIgnored{{"WELCOME10", "unknown_code"}, {"ELSE9", "code_not_on_offer"}}},
		{"an expired code and one that cannot be a code", shopifyHook("shop/acme", "orders/create", withOrder(create, "12", "OLD1", "SUMMER-10")),
			[]shopIgnored{{"OLD1", "code_not_active"}, {"SUMMER-10", "invalid_code"}}},
		{"no codes", shopifyHook("shop/acme", "orders/create", []byte(`{"id": 13, "currency": "USD", "current_subtotal_price": "5.00", "discount_codes": []}`)),
			[]shopIgnored{{"", "no_codes"}}},
		{"another topic", shopifyHook("shop/acme", "products/update", []byte(`{"id": 632910392, "title": "IPod Nano - 8GB"}`)),
			[]shopIgnored{{"", "topic_not_handled"}}},
		{"woo ping", hook{path: "/integrations/woocommerce/shop/woo", body: []byte("webhook_id=3"),
			headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "WordPress/6.7.1; https://shop.example.com"}}, []shopIgnored{}},
		{"woo trashed order", wooHook("order.updated", []byte(strings.Replace(string(fixture(t, "woocommerce/order.json")), `"status": "pending"`, `"status": "trash"`, 1))),
			[]shopIgnored{{"", "status_not_tracked"}}},
		{"woo other topic", wooHook("coupon.updated", []byte(`{"id": 512, "code": "promo22"}`)), []shopIgnored{{"", "topic_not_handled"}}},
		{"woo site without its trailing slash", wooHook("coupon.created", []byte(`{"id": 513}`)).with("X-WC-Webhook-Source", "https://SHOP.example.com"),
			[]shopIgnored{{"", "topic_not_handled"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r, raw := send(t, e.url, tc.hook)
			if code != 200 || r.Status != "ok" || len(r.Recorded)+len(r.Duplicates)+len(r.Changed) != 0 {
				t.Fatalf("got %d %s", code, raw)
			}
			if got, _ := json.Marshal(r.Ignored); string(got) != mustJSON(tc.ignored) {
				t.Fatalf("ignored %s, want %s", got, mustJSON(tc.ignored))
			}
			for _, key := range []string{`"recorded":[]`, `"duplicates":[]`, `"changed":[]`, `"ignored":[`} {
				if !bytes.Contains(raw, []byte(key)) {
					t.Fatalf("the summary always has its four lists: %s", raw)
				}
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestShopNotReadyWithoutTable(t *testing.T) {
	e := start(t, freshDB(t), nil)
	body := fixture(t, "shopify/orders_create.json")
	code, r, raw := send(t, e.url, shopifyHook("shop/acme", "orders/create", body))
	if code != 503 || r.Status != "not_ready" {
		t.Fatalf("got %d %s", code, raw)
	}
}
