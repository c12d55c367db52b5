package tracker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"promocodes.dev/promo-operator/internal/outagelog"
	"promocodes.dev/promo-operator/internal/routing"
)

// Shop webhooks (SPEC §8): POST /integrations/shopify/{namespace}/{name} and
// POST /integrations/woocommerce/{namespace}/{name}. A delivery is checked in
// this order, each failure answering at once:
//
//	405 method_not_allowed   not a POST
//	503 not_ready            no routing table yet
//	404 unknown_storefront   no Ready Storefront namespace/name, or of the other platform
//	413 payload_too_large    body over maxShopBodyBytes
//	401 invalid_signature    signature header missing or not base64(HMAC-SHA256(secret, body))
//	404 wrong_shop           signed, but X-Shopify-Shop-Domain / X-WC-Webhook-Source is not spec.shop
//	400 bad_request          not the platform's JSON for the topic (message says what)
//	503 storage_unavailable  PostgreSQL did not take it: the shop retries, the retry records once
//	200 ok                   a summary of what was recorded, changed, a duplicate, or ignored
//
// The shop is checked after the signature so that nothing about a
// Storefront's spec is told to an unauthenticated caller; a wrong shop with a
// good signature is "not this storefront" (several shops of one Shopify app
// share its secret), hence 404 like an unknown storefront.

// maxShopBodyBytes bounds a delivery's body. Real orders are far smaller: an
// order of 250 line items is about 1 MiB of Shopify JSON.
const maxShopBodyBytes = 4 << 20

// shopTimeout bounds the status changes of one delivery, well inside
// Shopify's 5 s.
const shopTimeout = 4 * time.Second

// statusChanger is Writer.ChangeStatus (status changes with history).
type statusChanger interface {
	ChangeStatus(ctx context.Context, c StatusChange) ([]StatusChangeResult, error)
}

// ShopHandler answers the shops' webhook deliveries.
type ShopHandler struct {
	Routes  *Routes
	Writer  *Writer
	Metrics *Metrics
	Log     *slog.Logger
	// Changes applies status changes; nil answers 503 to deliveries needing one.
	Changes           statusChanger
	TrustForwardedFor bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// storeLog throttles the Error lines of an outage (the deliveries metric
	// counts every storage_unavailable).
	storeLog outagelog.Log
}

// NewShopHandler returns the handler of both shop routes, writing through w.
func NewShopHandler(routes *Routes, w *Writer, m *Metrics, log *slog.Logger, trustForwardedFor bool) *ShopHandler {
	return &ShopHandler{Routes: routes, Writer: w, Changes: w, Metrics: m, Log: log, TrustForwardedFor: trustForwardedFor}
}

// Shopify is the handler of /integrations/shopify/{namespace}/{name}.
func (h *ShopHandler) Shopify() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, &shopifyPlatform) })
}

// WooCommerce is the handler of /integrations/woocommerce/{namespace}/{name}.
func (h *ShopHandler) WooCommerce() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, &wooPlatform) })
}

// platform is what differs between Shopify and WooCommerce.
type platform struct {
	name            string // routing.PlatformShopify or routing.PlatformWooCommerce
	signatureHeader string
	topicHeader     string
	topics          map[string]bool // topics labelled by name in metrics
	// ping answers an unsigned delivery that is the platform's ping; false:
	// the delivery must be signed.
	ping func(r *http.Request, body []byte) bool
	// shopMatches reports whether the delivery comes from the storefront's shop.
	shopMatches func(r *http.Request, sf *routing.Storefront) (bool, string)
	// deliver handles a verified delivery of topic.
	deliver func(h *ShopHandler, d *delivery) (int, *reply)
}

// delivery is one verified delivery being handled.
type delivery struct {
	ctx      context.Context
	r        *http.Request
	table    *routing.Table
	sf       *routing.Storefront
	topic    string
	body     []byte
	received time.Time
	source   string // conversions.source: shopify or woocommerce
	sum      shopSummary
}

// shopSummary is the 200 reply: what a delivery did. Every list is present
// (maybe empty), so the shape is stable.
type shopSummary struct {
	Status     string `json:"status"` // "ok"
	Storefront string `json:"storefront"`
	Topic      string `json:"topic"`
	OrderID    string `json:"order_id,omitempty"`
	// Recorded: new conversions, committed before the reply.
	Recorded []shopConversion `json:"recorded"`
	// Duplicates: conversions this order already has, at this status.
	Duplicates []shopConversion `json:"duplicates"`
	// Changed: status changes asked of recorded conversions; Result is
	// "changed" (applied, kept in history) or "invalid_transition" (refused:
	// SPEC §3 allows pending → approved | declined, approved → declined).
	Changed []shopChange `json:"changed"`
	// Ignored: codes that are not active codes of the storefront's offers,
	// and deliveries with nothing to do, with the reason.
	Ignored []shopIgnored `json:"ignored"`
}

type shopConversion struct {
	Code         string `json:"code,omitempty"`
	OfferID      int64  `json:"offer_id"`
	GoalID       int64  `json:"goal_id"`
	ConversionID string `json:"conversion_id,omitempty"`
	Status       string `json:"status,omitempty"`
	Amount       string `json:"amount,omitempty"`
	Currency     string `json:"currency,omitempty"`
}

type shopChange struct {
	Code         string `json:"code,omitempty"` // when the delivery names it (a refund does not)
	ConversionID string `json:"conversion_id"`
	OfferID      int64  `json:"offer_id"`
	GoalID       int64  `json:"goal_id"`
	From         string `json:"from"`
	To           string `json:"to"`
	Result       string `json:"result"` // changed | invalid_transition
}

type shopIgnored struct {
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason"`
}

// Reasons in shopSummary.Ignored.
const (
	ignoredInvalidCode      = "invalid_code" // not [A-Za-z0-9]{1,64}: never one of ours
	ignoredTopic            = "topic_not_handled"
	ignoredNoCodes          = "no_codes"
	ignoredOrderNotRecorded = "order_not_recorded"
	ignoredStatus           = "status_not_tracked"
)

func (h *ShopHandler) serve(w http.ResponseWriter, r *http.Request, p *platform) {
	received := time.Now()
	if h.Now != nil {
		received = h.Now()
	}
	topic := "none"
	var out any
	code, sum, rep := h.handle(w, r, p, received, &topic)
	status := "ok"
	if rep != nil {
		out, status = rep, rep.Status
	} else {
		out = sum
	}
	h.Metrics.Shop.Deliveries.WithLabelValues(p.name, topic, status).Inc()
	hd := w.Header()
	hd["Content-Type"], hd["Cache-Control"] = valJSON, valNoStore
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(out)
	h.Metrics.Shop.Latency.WithLabelValues(p.name).Observe(time.Since(received).Seconds())
}

// handle decides the reply: a summary, or an error reply.
func (h *ShopHandler) handle(w http.ResponseWriter, r *http.Request, p *platform, received time.Time, topicLabel *string) (int, *shopSummary, *reply) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return failed(http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
	}
	table := h.Routes.Load()
	if table == nil {
		return failed(http.StatusServiceUnavailable, "not_ready", "no routing table yet")
	}
	ref := r.PathValue("namespace") + "/" + r.PathValue("name")
	sf := table.Storefront(ref)
	if sf == nil || sf.Platform != p.name {
		return failed(http.StatusNotFound, "unknown_storefront", "no Ready "+p.name+" Storefront "+ref)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxShopBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return failed(http.StatusRequestEntityTooLarge, "payload_too_large", "body larger than 4 MiB")
		}
		return failed(http.StatusBadRequest, "bad_request", "reading the body failed")
	}
	sig := r.Header.Get(p.signatureHeader)
	if sig == "" && p.ping != nil && p.ping(r, body) {
		*topicLabel = "ping"
		return http.StatusOK, &shopSummary{Status: "ok", Storefront: ref, Topic: "ping",
			Recorded: []shopConversion{}, Duplicates: []shopConversion{}, Changed: []shopChange{}, Ignored: []shopIgnored{}}, nil
	}
	if !validSignature(sf.Secret, body, sig) {
		return failed(http.StatusUnauthorized, "invalid_signature", p.signatureHeader+" missing or not the body's base64 HMAC-SHA256 with the storefront's secret")
	}
	topic := r.Header.Get(p.topicHeader)
	*topicLabel = "other"
	if p.topics[topic] {
		*topicLabel = topic
	}
	if ok, got := p.shopMatches(r, sf); !ok {
		return failed(http.StatusNotFound, "wrong_shop", "delivery from "+quoteHeader(got)+", but Storefront "+ref+" is "+sf.Shop)
	}
	if topic == "" {
		return failed(http.StatusBadRequest, "bad_request", p.topicHeader+" missing")
	}
	d := &delivery{r: r, table: table, sf: sf, topic: topic, body: body, received: received, source: p.name,
		sum: shopSummary{Status: "ok", Storefront: ref, Topic: topic,
			Recorded: []shopConversion{}, Duplicates: []shopConversion{}, Changed: []shopChange{}, Ignored: []shopIgnored{}}}
	ctx, cancel := context.WithTimeout(r.Context(), shopTimeout)
	defer cancel()
	d.ctx = ctx
	if code, rep := p.deliver(h, d); rep != nil {
		return code, nil, rep
	}
	h.count(p.name, &d.sum)
	return http.StatusOK, &d.sum, nil
}

func failed(code int, status, message string) (int, *shopSummary, *reply) {
	rep := fail(status, message)
	return code, nil, &rep
}

func badRequest(message string) (int, *reply) {
	rep := fail("bad_request", message)
	return http.StatusBadRequest, &rep
}

func (h *ShopHandler) storageFailed(d *delivery, err error) (int, *reply) {
	h.storeLog.Failed(h.Log, d.received, "Failed to store a shop delivery; failures are logged at most once a minute until one succeeds", err,
		"storefront", d.sf.Ref, "topic", d.topic)
	rep := fail("storage_unavailable", "not stored; retry later")
	return http.StatusServiceUnavailable, &rep
}

func (h *ShopHandler) count(platform string, s *shopSummary) {
	c := h.Metrics.Shop.Conversions
	add := func(result string, n int) {
		if n > 0 {
			c.WithLabelValues(platform, result).Add(float64(n))
		}
	}
	add("recorded", len(s.Recorded))
	add("duplicate", len(s.Duplicates))
	add("ignored", len(s.Ignored))
	var changed, invalid int
	for _, ch := range s.Changed {
		if ch.Result == "changed" {
			changed++
		} else {
			invalid++
		}
	}
	add("changed", changed)
	add("invalid_transition", invalid)
}

// quoteHeader shows a header value in a message, bounded and printable.
func quoteHeader(s string) string {
	s = sanitize(s, 256)
	if s == "" {
		return "no shop header"
	}
	return `"` + s + `"`
}

// validSignature reports whether sig is base64(HMAC-SHA256(secret, body)),
// compared in constant time. An empty secret verifies nothing.
func validSignature(secret, body []byte, sig string) bool {
	if len(secret) == 0 || sig == "" {
		return false
	}
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// sign is what a shop puts in its signature header.
func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// An order as both platforms reduce to: its id, codes, amount and currency.
type shopOrder struct {
	ID       string // decimal, the conversions' adv_order_id
	Codes    []string
	Amount   string // an exact decimal >= 0
	Currency string // "" means the offer's
}

var orderIDRe = regexp.MustCompile(`^[0-9]{1,40}$`)

// checkOrderID validates an order id decoded as a json.Number: a plain
// non-negative integer, kept as its digits (no float64 on the way).
func checkOrderID(field string, n json.Number) (string, error) {
	s := n.String()
	if !orderIDRe.MatchString(s) {
		if s == "" {
			return "", errors.New(field + " missing")
		}
		return "", errors.New(field + " must be an integer, like 820982911946154508")
	}
	return s, nil
}

// checkMoney validates a money field (a JSON string like "10.00").
func checkMoney(field, s string) error {
	if s == "" {
		return errors.New(field + " missing")
	}
	if !amountRe.MatchString(s) {
		return errors.New(field + " must be a decimal >= 0 like \"19.99\", at most 18 integer and 6 fractional digits")
	}
	return nil
}

func checkCurrency(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if !currencyRe.MatchString(s) {
		return "", errors.New("currency must be a 3-letter ISO 4217 code, like USD")
	}
	return strings.ToUpper(s), nil
}

// match finds the first of the storefront's offers, in order, on which code
// is an active code, with the storefront's goal (goalAlias, else the
// offer's default goal) at time at. Without one, reason says why, the most
// telling outcome over all offers: code_not_active, then unknown_goal, then
// code_not_on_offer, then unknown_code; invalid_code when the code cannot be
// one of ours at all.
func match(t *routing.Table, sf *routing.Storefront, code string, at time.Time) (routing.Match, string) {
	best := routing.UnknownCode
	for _, ref := range sf.OfferRefs {
		o := t.Offer(ref)
		if o == nil {
			continue
		}
		m, out := t.Lookup(&routing.Query{Code: code, OfferID: o.ID, GoalAlias: sf.GoalAlias, At: at})
		switch {
		case out == routing.OK:
			return m, ""
		case out == routing.BadCode:
			return routing.Match{}, ignoredInvalidCode
		case missRank[out] > missRank[best]:
			best = out
		}
	}
	if !routing.ValidCode(code) {
		return routing.Match{}, ignoredInvalidCode
	}
	return routing.Match{}, best.String()
}

// missRank orders lookup failures by how much they tell.
var missRank = map[routing.Outcome]int{routing.UnknownCode: 0, routing.CodeNotOnOffer: 1, routing.UnknownGoal: 2, routing.CodeNotActive: 3}

// storefrontGoal is the storefront's goal on offer o: goalAlias, else the
// offer's default goal; nil when the offer has no such goal.
func storefrontGoal(sf *routing.Storefront, o *routing.Offer) *routing.Goal {
	if sf.GoalAlias == "" {
		if o.DefaultGoal < 0 || o.DefaultGoal >= len(o.Goals) {
			return nil
		}
		return &o.Goals[o.DefaultGoal]
	}
	for i := range o.Goals {
		if o.Goals[i].Alias == sf.GoalAlias {
			return &o.Goals[i]
		}
	}
	return nil
}

// goalStatus is the status a goal records for a paid order.
func goalStatus(g *routing.Goal) string { return g.Status }

// changeAll asks for the order's conversions on the storefront's goal of
// every one of its offers to become to(goal) — one ChangeStatus per distinct
// (goal id, status) — and adds the results to the summary. It returns the
// offers that have a conversion of this order.
func (h *ShopHandler) changeAll(d *delivery, orderID string, to func(*routing.Goal) string) (map[int64]bool, error) {
	type key struct {
		goal int64
		to   string
	}
	var keys []key
	offers := map[key][]int64{}
	for _, ref := range d.sf.OfferRefs {
		o := d.table.Offer(ref)
		if o == nil {
			continue
		}
		g := storefrontGoal(d.sf, o)
		if g == nil {
			continue
		}
		k := key{g.ID, to(g)}
		if _, ok := offers[k]; !ok {
			keys = append(keys, k)
		}
		offers[k] = append(offers[k], o.ID)
	}
	known := map[int64]bool{}
	for _, k := range keys {
		res, err := h.change(d, StatusChange{OfferIDs: offers[k], GoalID: k.goal, AdvOrderID: orderID, To: k.to}, "")
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			known[r.OfferID] = true
		}
	}
	return known, nil
}

// change applies one status change and adds its results to the summary
// (code, when known, names the code in duplicates).
func (h *ShopHandler) change(d *delivery, c StatusChange, code string) ([]StatusChangeResult, error) {
	if h.Changes == nil {
		return nil, errors.New("this tracker cannot change statuses")
	}
	c.Source, c.At = d.source, d.received
	res, err := h.Changes.ChangeStatus(d.ctx, c)
	if err != nil {
		return nil, err
	}
	h.storeLog.Recovered(h.Log, "Storing shop deliveries again")
	for _, r := range res {
		switch r.Outcome {
		case ChangeSame:
			d.sum.Duplicates = append(d.sum.Duplicates, shopConversion{Code: code, OfferID: r.OfferID, GoalID: r.GoalID,
				ConversionID: r.ConversionID.String(), Status: r.From})
		case ChangeApplied:
			d.sum.Changed = append(d.sum.Changed, shopChange{ConversionID: r.ConversionID.String(), OfferID: r.OfferID, GoalID: r.GoalID,
				From: r.From, To: r.To, Result: "changed"})
		default:
			to := r.To
			if to == "" {
				to = c.To
			}
			d.sum.Changed = append(d.sum.Changed, shopChange{ConversionID: r.ConversionID.String(), OfferID: r.OfferID, GoalID: r.GoalID,
				From: r.From, To: to, Result: "invalid_transition"})
		}
	}
	return res, nil
}

// recordOptions say how record treats an order.
type recordOptions struct {
	// status is the status a new conversion gets on goal g.
	status func(g *routing.Goal) string
	// known: offers already holding a conversion of this order (changeAll);
	// their codes are not recorded again.
	known map[int64]bool
	// changeDuplicates: a conversion that exists already is asked to take
	// status (WooCommerce, whose deliveries may come out of order); false:
	// it is reported as a duplicate (Shopify's orders/create and orders/paid).
	changeDuplicates bool
}

// record records one conversion per code of the order that is an active code
// of the storefront's offers, committed before it returns.
func (h *ShopHandler) record(d *delivery, o *shopOrder, opt recordOptions) error {
	if len(o.Codes) == 0 {
		d.sum.Ignored = append(d.sum.Ignored, shopIgnored{Reason: ignoredNoCodes})
		return nil
	}
	seen := map[string]bool{}
	for _, code := range o.Codes {
		folded := strings.ToUpper(code)
		if seen[folded] {
			continue
		}
		seen[folded] = true
		m, reason := match(d.table, d.sf, code, d.received)
		if reason != "" {
			d.sum.Ignored = append(d.sum.Ignored, shopIgnored{Code: sanitize(code, 64), Reason: reason})
			continue
		}
		if opt.known[m.Offer.ID] {
			d.nameCode(m) // its conversion was changed, or is a duplicate, above
			continue
		}
		status := opt.status(m.Goal)
		row := h.row(d, o, m, status)
		res := h.Writer.Submit(d.ctx, row)
		if res.Err != nil {
			return res.Err
		}
		h.storeLog.Recovered(h.Log, "Storing shop deliveries again")
		if !res.Duplicate {
			d.sum.Recorded = append(d.sum.Recorded, shopConversion{Code: m.Entry.Code, OfferID: m.Offer.ID, GoalID: m.Goal.ID,
				ConversionID: row.ID.String(), Status: status, Amount: row.Amount, Currency: row.Currency})
			continue
		}
		if opt.changeDuplicates {
			res, err := h.change(d, StatusChange{OfferIDs: []int64{m.Offer.ID}, GoalID: m.Goal.ID, AdvOrderID: o.ID, To: status}, m.Entry.Code)
			if err != nil {
				return err
			}
			if len(res) > 0 {
				continue
			}
		}
		dup := shopConversion{Code: m.Entry.Code, OfferID: m.Offer.ID, GoalID: m.Goal.ID}
		if res.ExistingID != uuid.Nil {
			dup.ConversionID = res.ExistingID.String()
		}
		d.sum.Duplicates = append(d.sum.Duplicates, dup)
	}
	return nil
}

// nameCode names m's code in the changes and duplicates of its offer and goal.
func (d *delivery) nameCode(m routing.Match) {
	for i := range d.sum.Changed {
		if c := &d.sum.Changed[i]; c.Code == "" && c.OfferID == m.Offer.ID && c.GoalID == m.Goal.ID {
			c.Code = m.Entry.Code
		}
	}
	for i := range d.sum.Duplicates {
		if c := &d.sum.Duplicates[i]; c.Code == "" && c.OfferID == m.Offer.ID && c.GoalID == m.Goal.ID {
			c.Code = m.Entry.Code
		}
	}
}

func (h *ShopHandler) row(d *delivery, o *shopOrder, m routing.Match, status string) Row {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	currency := o.Currency
	if currency == "" {
		currency = m.Offer.Currency
	}
	amount := decimal.RequireFromString(o.Amount) // checked by the decoder
	ph := Handler{TrustForwardedFor: h.TrustForwardedFor}
	return Row{
		ID: id, CreatedAt: d.received, PromoCode: m.Entry.Code, PromoCodeRef: m.Entry.Ref,
		OfferID: m.Offer.ID, AffiliateID: m.Entry.AffiliateID, GoalID: m.Goal.ID, Status: status,
		Amount: o.Amount, Payout: m.Goal.Payout.Text(amount), Revenue: m.Goal.Revenue.Text(amount),
		Currency: currency, AdvOrderID: o.ID, Source: d.source,
		IP: ph.clientIP(d.r), UserAgent: sanitize(d.r.UserAgent(), 512),
	}
}

// decline declines the order's conversions on the storefront's offers.
func (h *ShopHandler) decline(d *delivery, orderID string) (int, *reply) {
	d.sum.OrderID = orderID
	known, err := h.changeAll(d, orderID, func(*routing.Goal) string { return "declined" })
	if err != nil {
		return h.storageFailed(d, err)
	}
	if len(known) == 0 {
		d.sum.Ignored = append(d.sum.Ignored, shopIgnored{Reason: ignoredOrderNotRecorded})
	}
	return http.StatusOK, nil
}

// exactText writes d with the scale it has ("18.00"), not trimmed.
func exactText(d decimal.Decimal) string {
	if d.Exponent() < 0 {
		return d.StringFixed(-d.Exponent())
	}
	return d.String()
}
