package tracker

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"promocodes.dev/promo-operator/internal/routing"
)

// Params is a parsed, validated /track/promo request (SPEC §3).
type Params struct {
	Code       string
	OfferID    int64
	GoalID     int64
	GoalAlias  string
	Amount     decimal.Decimal
	AmountText string // as given, normalized; "0" when absent
	Currency   string // "" means the offer's
	AdvOrderID string
	ConvStatus string // "" means the goal's
	Token      string
	AdvParams  [5]string
	Return     string // "", "js", "img", "iframe"
}

// Limits of request values.
const (
	maxOrderID    = 128
	maxAdvParam   = 256
	maxAmountInt  = 18
	maxAmountFrac = 6
)

var (
	aliasRe    = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	currencyRe = regexp.MustCompile(`^[A-Za-z]{3}$`)
	amountRe   = regexp.MustCompile(`^[0-9]{1,18}(\.[0-9]{1,6})?$`)
)

// ParseParams validates the values of a request. Empty values count as
// absent; unknown parameters are ignored. The error says what to fix.
func ParseParams(v url.Values) (Params, error) {
	var p Params
	get := func(k string) string { return v.Get(k) }
	for k, vals := range v {
		for _, s := range vals {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				return p, fmt.Errorf("parameter %q is not valid UTF-8 text", k)
			}
		}
	}
	p.Code = get("code")
	switch {
	case p.Code == "":
		return p, fmt.Errorf("code is required")
	case !routing.ValidCode(p.Code):
		return p, fmt.Errorf("code must be 1-64 Latin letters and digits")
	}
	var err error
	if p.OfferID, err = positiveInt("offer_id", get("offer_id")); err != nil {
		return p, err
	}
	if p.GoalID, err = positiveInt("goal_id", get("goal_id")); err != nil {
		return p, err
	}
	if p.GoalAlias = get("goal_alias"); p.GoalAlias != "" && !aliasRe.MatchString(p.GoalAlias) {
		return p, fmt.Errorf("goal_alias must match ^[a-z0-9_-]{1,64}$")
	}
	p.AmountText = "0"
	if a := get("amount"); a != "" {
		if !amountRe.MatchString(a) {
			return p, fmt.Errorf("amount must be a decimal >= 0 with at most %d integer and %d fractional digits, like 19.99", maxAmountInt, maxAmountFrac)
		}
		p.Amount = decimal.RequireFromString(a)
		p.AmountText = p.Amount.String()
	}
	if c := get("currency"); c != "" {
		if !currencyRe.MatchString(c) {
			return p, fmt.Errorf("currency must be a 3-letter ISO 4217 code, like USD")
		}
		p.Currency = strings.ToUpper(c)
	}
	if p.AdvOrderID = get("adv_order_id"); len(p.AdvOrderID) > maxOrderID {
		return p, fmt.Errorf("adv_order_id is longer than %d characters", maxOrderID)
	}
	switch p.ConvStatus = get("conv_status"); p.ConvStatus {
	case "", "approved", "pending", "declined":
	default:
		return p, fmt.Errorf("conv_status must be approved, pending or declined")
	}
	p.Token = get("token")
	for i := range p.AdvParams {
		k := "adv_param" + strconv.Itoa(i+1)
		if p.AdvParams[i] = get(k); utf8.RuneCountInString(p.AdvParams[i]) > maxAdvParam {
			return p, fmt.Errorf("%s is longer than %d characters", k, maxAdvParam)
		}
	}
	switch p.Return = get("return"); p.Return {
	case "", "js", "img", "iframe":
	default:
		return p, fmt.Errorf("return must be js, img or iframe")
	}
	return p, nil
}

func positiveInt(name, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s must be an integer >= 1", name)
	}
	return n, nil
}
