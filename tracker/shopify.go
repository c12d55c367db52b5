package tracker

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"promocodes.dev/promo-operator/internal/routing"
)

// Shopify order webhooks (SPEC §8). Shopify signs the raw body with the
// webhook's secret (X-Shopify-Hmac-Sha256), names the shop in
// X-Shopify-Shop-Domain and the topic in X-Shopify-Topic. Topics:
//
//	orders/create, orders/paid   record a conversion per discount code that is
//	                             an active code of the storefront's offers;
//	                             the same order again, by either topic, is a duplicate
//	orders/cancelled             decline the order's conversions
//	refunds/create               decline the conversions of its order_id (a
//	                             partial refund too: SPEC §8)
//	anything else                200, ignored (topic_not_handled)
var shopifyPlatform = platform{
	name:            routing.PlatformShopify,
	signatureHeader: "X-Shopify-Hmac-Sha256",
	topicHeader:     "X-Shopify-Topic",
	topics:          map[string]bool{"orders/create": true, "orders/paid": true, "orders/cancelled": true, "refunds/create": true},
	shopMatches: func(r *http.Request, sf *routing.Storefront) (bool, string) {
		got := r.Header.Get("X-Shopify-Shop-Domain")
		return got != "" && strings.EqualFold(got, sf.Shop), got
	},
	deliver: deliverShopify,
}

// shopifyOrder is what the tracker reads of a Shopify order (the payload of
// orders/create, orders/paid, orders/cancelled); every other field is
// skipped. Money is a JSON string ("10.00"); the id is a JSON number beyond
// float64's exact range (820982911946154508), kept as its digits.
type shopifyOrder struct {
	ID                   json.Number           `json:"id"`
	Currency             string                `json:"currency"`
	CurrentSubtotalPrice string                `json:"current_subtotal_price"`
	CurrentTotalPrice    string                `json:"current_total_price"`
	DiscountCodes        []shopifyDiscountCode `json:"discount_codes"`
}

type shopifyDiscountCode struct {
	Code string `json:"code"`
}

// shopifyRefund is what the tracker reads of refunds/create.
type shopifyRefund struct {
	OrderID json.Number `json:"order_id"`
}

// decodeShopifyOrder decodes an order body; the error says what is wrong.
func decodeShopifyOrder(body []byte) (shopifyOrder, error) {
	var o shopifyOrder
	if err := json.Unmarshal(body, &o); err != nil {
		return shopifyOrder{}, errors.New("not a Shopify order: " + jsonProblem(err))
	}
	return o, nil
}

func decodeShopifyRefund(body []byte) (shopifyRefund, error) {
	var rf shopifyRefund
	if err := json.Unmarshal(body, &rf); err != nil {
		return shopifyRefund{}, errors.New("not a Shopify refund: " + jsonProblem(err))
	}
	return rf, nil
}

// order checks the fields a conversion needs: amount is
// current_subtotal_price, or current_total_price for a storefront with
// amount: total.
func (so *shopifyOrder) order(amount string) (shopOrder, error) {
	var o shopOrder
	var err error
	if o.ID, err = checkOrderID("id", so.ID); err != nil {
		return o, err
	}
	field, value := "current_subtotal_price", so.CurrentSubtotalPrice
	if amount == "total" {
		field, value = "current_total_price", so.CurrentTotalPrice
	}
	if err := checkMoney(field, value); err != nil {
		return o, err
	}
	o.Amount = value
	if o.Currency, err = checkCurrency(so.Currency); err != nil {
		return o, err
	}
	for _, c := range so.DiscountCodes {
		o.Codes = append(o.Codes, c.Code)
	}
	return o, nil
}

func deliverShopify(h *ShopHandler, d *delivery) (int, *reply) {
	switch d.topic {
	case "orders/create", "orders/paid":
		so, err := decodeShopifyOrder(d.body)
		if err != nil {
			return badRequest(err.Error())
		}
		o, err := so.order(d.sf.Amount)
		if err != nil {
			return badRequest(err.Error())
		}
		d.sum.OrderID = o.ID
		if err := h.record(d, &o, recordOptions{status: goalStatus}); err != nil {
			return h.storageFailed(d, err)
		}
		return http.StatusOK, nil
	case "orders/cancelled":
		so, err := decodeShopifyOrder(d.body)
		if err != nil {
			return badRequest(err.Error())
		}
		id, err := checkOrderID("id", so.ID)
		if err != nil {
			return badRequest(err.Error())
		}
		return h.decline(d, id)
	case "refunds/create":
		rf, err := decodeShopifyRefund(d.body)
		if err != nil {
			return badRequest(err.Error())
		}
		id, err := checkOrderID("order_id", rf.OrderID)
		if err != nil {
			return badRequest(err.Error())
		}
		return h.decline(d, id)
	}
	d.sum.Ignored = append(d.sum.Ignored, shopIgnored{Reason: ignoredTopic})
	return http.StatusOK, nil
}

// jsonProblem describes a decoding error without Go type names.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return "malformed JSON at byte " + strconv.FormatInt(syntax.Offset, 10)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "the body is a JSON " + typ.Value + ", not an object"
		}
		return typ.Field + " is a JSON " + typ.Value + " of the wrong type"
	}
	if strings.Contains(err.Error(), "unexpected end of JSON input") {
		return "the JSON ends early"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
