package tracker

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"promocodes.dev/promo-operator/internal/routing"
)

// WooCommerce order webhooks (SPEC §8). WooCommerce signs the raw body with
// the webhook's secret (X-WC-Webhook-Signature), names the site in
// X-WC-Webhook-Source (home_url('/'), with a trailing slash) and the topic
// in X-WC-Webhook-Topic. When a webhook is saved it sends an unsigned ping,
// the form body webhook_id=N, and keeps the webhook only on a 2xx.
//
// Topics order.created and order.updated carry the whole order; its status
// decides the conversion status:
//
//	processing, completed          the goal's status
//	pending, on-hold               pending
//	cancelled, refunded, failed    declined
//	any other (trash, checkout-draft, a plugin's own)   ignored (status_not_tracked)
//
// A new order records a conversion per coupon code that is an active code of
// the storefront's offers; a known order's conversions change status (§3
// transitions, kept in history). A transition §3 refuses (declined → approved,
// say: an order re-opened after its refund) is reported as
// invalid_transition and still answered 200 — the shop would otherwise retry
// it, then disable the webhook (WooCommerce does after 5 failed deliveries).
// Deliveries may arrive out of order (WooCommerce queues them): a refund
// seen first records a declined conversion, which the later order.created
// then cannot reopen.
var wooPlatform = platform{
	name:            routing.PlatformWooCommerce,
	signatureHeader: "X-WC-Webhook-Signature",
	topicHeader:     "X-WC-Webhook-Topic",
	topics:          map[string]bool{"order.created": true, "order.updated": true},
	ping:            wooPing,
	shopMatches: func(r *http.Request, sf *routing.Storefront) (bool, string) {
		got := r.Header.Get("X-WC-Webhook-Source")
		return sameSite(got, sf.Shop), got
	},
	deliver: deliverWoo,
}

var wooPingRe = regexp.MustCompile(`^webhook_id=[0-9]{1,20}$`)

// wooPing reports whether an unsigned delivery is WooCommerce's ping.
func wooPing(_ *http.Request, body []byte) bool {
	return wooPingRe.Match(bytes.TrimSpace(body))
}

// sameSite compares X-WC-Webhook-Source with spec.shop: scheme and host
// case-insensitively, the path exactly, a trailing slash on either ignored.
func sameSite(got, shop string) bool {
	if got == "" {
		return false
	}
	a, errA := url.Parse(got)
	b, errB := url.Parse(shop)
	if errA != nil || errB != nil {
		return false
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host) &&
		strings.TrimRight(a.Path, "/") == strings.TrimRight(b.Path, "/") && a.RawQuery == "" && b.RawQuery == ""
}

// wooOrder is what the tracker reads of a WooCommerce order (REST API v3
// shape, as webhooks deliver it); every other field is skipped.
type wooOrder struct {
	ID          json.Number     `json:"id"`
	Status      string          `json:"status"`
	Currency    string          `json:"currency"`
	Total       string          `json:"total"`
	LineItems   []wooLineItem   `json:"line_items"`
	CouponLines []wooCouponLine `json:"coupon_lines"`
}

type wooLineItem struct {
	Total string `json:"total"` // after discounts, before tax
}

type wooCouponLine struct {
	Code string `json:"code"`
}

func decodeWooOrder(body []byte) (wooOrder, error) {
	var o wooOrder
	if err := json.Unmarshal(body, &o); err != nil {
		return wooOrder{}, errors.New("not a WooCommerce order: " + jsonProblem(err))
	}
	return o, nil
}

// order checks the fields a conversion needs. The amount is the subtotal —
// the sum of line_items[].total: after discounts, before shipping, fees and
// taxes, like Shopify's current_subtotal_price — or, for a storefront with
// amount: total, the order's total.
func (wo *wooOrder) order(amount string) (shopOrder, error) {
	var o shopOrder
	var err error
	if o.ID, err = checkOrderID("id", wo.ID); err != nil {
		return o, err
	}
	if amount == "total" {
		if err := checkMoney("total", wo.Total); err != nil {
			return o, err
		}
		o.Amount = wo.Total
	} else {
		sum := decimal.Zero
		for i, li := range wo.LineItems {
			field := "line_items[" + strconv.Itoa(i) + "].total"
			if err := checkMoney(field, li.Total); err != nil {
				return o, err
			}
			sum = sum.Add(decimal.RequireFromString(li.Total))
		}
		o.Amount = exactText(sum)
		if err := checkMoney("the subtotal (sum of line_items[].total)", o.Amount); err != nil {
			return o, err
		}
	}
	if o.Currency, err = checkCurrency(wo.Currency); err != nil {
		return o, err
	}
	for _, c := range wo.CouponLines {
		o.Codes = append(o.Codes, c.Code)
	}
	return o, nil
}

// wooStatus maps an order status to the conversion status on a goal;
// ok false for a status not tracked.
func wooStatus(status string) (to func(*routing.Goal) string, declines, ok bool) {
	switch status {
	case "processing", "completed":
		return goalStatus, false, true
	case "pending", "on-hold":
		return func(*routing.Goal) string { return "pending" }, false, true
	case "cancelled", "refunded", "failed":
		return func(*routing.Goal) string { return "declined" }, true, true
	}
	return nil, false, false
}

func deliverWoo(h *ShopHandler, d *delivery) (int, *reply) {
	if d.topic != "order.created" && d.topic != "order.updated" {
		d.sum.Ignored = append(d.sum.Ignored, shopIgnored{Reason: ignoredTopic})
		return http.StatusOK, nil
	}
	wo, err := decodeWooOrder(d.body)
	if err != nil {
		return badRequest(err.Error())
	}
	o, err := wo.order(d.sf.Amount)
	if err != nil {
		return badRequest(err.Error())
	}
	d.sum.OrderID = o.ID
	status, declines, ok := wooStatus(wo.Status)
	if !ok {
		d.sum.Ignored = append(d.sum.Ignored, shopIgnored{Reason: ignoredStatus})
		return http.StatusOK, nil
	}
	opt := recordOptions{status: status, changeDuplicates: true}
	// An update, or a decline of any delivery, is usually of a known order:
	// change its conversions first, whether or not its codes are still
	// active (a refund after a code's endDate still declines). A new order
	// is inserted first; a duplicate then takes the status.
	if d.topic == "order.updated" || declines {
		if opt.known, err = h.changeAll(d, o.ID, status); err != nil {
			return h.storageFailed(d, err)
		}
	}
	if err := h.record(d, &o, opt); err != nil {
		return h.storageFailed(d, err)
	}
	return http.StatusOK, nil
}
