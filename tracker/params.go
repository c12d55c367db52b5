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
}

var advParamKeys = [5]string{"adv_param1", "adv_param2", "adv_param3", "adv_param4", "adv_param5"}

// Limits of request values.
const (
	maxQueryParams = 10000 // url.ParseQuery's default limit
	maxOrderID     = 128
	maxAdvParam    = 256
	maxAmountInt   = 18
	maxAmountFrac  = 6
)

var (
	aliasRe    = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	currencyRe = regexp.MustCompile(`^[A-Za-z]{3}$`)
	amountRe   = regexp.MustCompile(`^[0-9]{1,18}(\.[0-9]{1,6})?$`)
)

// Query is a request's parameters in order, as parsed by ParseQuery: a
// slice instead of url.Values' map of slices, which costs several allocations
// per request. Get returns the first value, as url.Values.Get does.
type Query []Pair

// Pair is one key and value.
type Pair struct{ Key, Value string }

// Get returns the first value of key, "" when absent.
func (q Query) Get(key string) string {
	for i := range q {
		if q[i].Key == key {
			return q[i].Value
		}
	}
	return ""
}

// ParseQuery parses a raw query string exactly as url.ParseQuery does (the
// same pairs in the same order, the same error on the same input); a query
// without escapes allocates one slice.
func ParseQuery(raw string) (Query, error) {
	n := strings.Count(raw, "&") + 1
	if n > maxQueryParams {
		return nil, fmt.Errorf("number of URL query parameters exceeded limit")
	}
	q := make(Query, 0, n)
	var first error
	for raw != "" {
		var key string
		key, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(key, ";") {
			first = fmt.Errorf("invalid semicolon separator in query") // the last one, as url.ParseQuery
			continue
		}
		if key == "" {
			continue
		}
		key, value, _ := strings.Cut(key, "=")
		key, err := url.QueryUnescape(key)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		value, err = url.QueryUnescape(value)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		q = append(q, Pair{key, value})
	}
	return q, first
}

// QueryOf flattens url.Values (a parsed form) into a Query.
func QueryOf(v url.Values) Query {
	var q Query
	for k, vals := range v {
		for _, s := range vals {
			q = append(q, Pair{k, s})
		}
	}
	return q
}

// Params validates the values of a request. Empty values count as absent;
// unknown parameters are ignored. The error says what to fix.
func (q Query) Params() (Params, error) {
	var p Params
	get := q.Get
	for _, kv := range q {
		if !utf8.ValidString(kv.Value) || strings.IndexByte(kv.Value, 0) >= 0 {
			return p, fmt.Errorf("parameter %q is not valid UTF-8 text", kv.Key)
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
		k := advParamKeys[i]
		if p.AdvParams[i] = get(k); utf8.RuneCountInString(p.AdvParams[i]) > maxAdvParam {
			return p, fmt.Errorf("%s is longer than %d characters", k, maxAdvParam)
		}
	}
	switch get("return") { // the handler reads it for the reply's form; here it is only checked
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
