package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"promocodes.dev/promo-operator/internal/outagelog"
	"promocodes.dev/promo-operator/internal/routing"
)

const (
	maxQueryBytes = 8 << 10
	maxBodyBytes  = 64 << 10
)

// gif is a 1x1 transparent GIF.
var gif = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

const iframePage = "<!doctype html><html><head><meta charset=\"utf-8\"><title></title></head><body></body></html>"

// reply is the JSON body of a postback reply.
// Errors carry their SPEC §3 code in both status and reason, and a human
// explanation of what to fix in message.
type reply struct {
	Status       string `json:"status"`
	ConversionID string `json:"conversion_id,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Message      string `json:"message,omitempty"`
}

func fail(code, message string) reply { return reply{Status: code, Reason: code, Message: message} }

// Handler answers /track/promo.
type Handler struct {
	Routes            *Routes
	Writer            *Writer
	Metrics           *Metrics
	Log               *slog.Logger
	TrustForwardedFor bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	storeLog storeFailureLog
}

// storeFailureLog keeps an outage from logging an Error per failed request
// (promo_tracker_requests_total counts them, reason storage_unavailable):
// internal/outagelog's throttle, the same as the portal's.
type storeFailureLog struct{ outagelog.Log }

func (l *storeFailureLog) failed(log *slog.Logger, now time.Time, offer int64, ref string, err error) {
	l.Failed(log, now, "Failed to store conversion; failures are logged at most once a minute until one succeeds", err,
		"offer", offer, "code_ref", ref)
}

func (l *storeFailureLog) stored(log *slog.Logger) { l.Recovered(log, "Storing conversions again") }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	if h.Now != nil {
		received = h.Now()
	}
	source := "postback"
	rep, code := h.track(w, r, received, &source)
	h.Metrics.Requests.WithLabelValues(rep.Status, source).Inc()
	if source != "postback" {
		writePixel(w, source, rep.Status)
	} else {
		h := w.Header()
		h["Content-Type"], h["Cache-Control"], h["X-Promo-Status"] = valJSON, valNoStore, statusValue(rep.Status)
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	}
	h.Metrics.Latency.WithLabelValues(source).Observe(time.Since(received).Seconds())
}

// track decides the reply. Errors carry their SPEC §3 code as reply.Status
// and reply.Reason, and a human explanation as reply.Message.
func (h *Handler) track(w http.ResponseWriter, r *http.Request, received time.Time, source *string) (reply, int) {
	if len(r.URL.RawQuery) > maxQueryBytes {
		return fail("bad_request", "query string longer than 8 KiB"), http.StatusRequestURITooLong
	}
	values, err := ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fail("bad_request", "malformed query string"), http.StatusBadRequest
	}
	if ret := values.Get("return"); ret == "js" || ret == "img" || ret == "iframe" {
		*source = ret
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return fail("bad_request", "body larger than 64 KiB"), http.StatusRequestEntityTooLarge
			}
			return fail("bad_request", "malformed form body"), http.StatusBadRequest
		}
		values = QueryOf(r.Form)
		if ret := values.Get("return"); ret == "js" || ret == "img" || ret == "iframe" {
			*source = ret
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		return fail("method_not_allowed", "use GET or POST"), http.StatusMethodNotAllowed
	}
	p, err := values.Params()
	if err != nil {
		return fail("bad_request", err.Error()), http.StatusBadRequest
	}
	table := h.Routes.Load()
	if table == nil {
		return fail("not_ready", "no routing table yet"), http.StatusServiceUnavailable
	}
	m, out := table.Lookup(&routing.Query{Code: p.Code, OfferID: p.OfferID, GoalID: p.GoalID, GoalAlias: p.GoalAlias, At: received})
	if out != routing.OK {
		return fail(out.String(), outcomeReason[out]), http.StatusNotFound
	}
	if !m.Offer.CheckToken(p.Token) {
		return fail("invalid_token", "token missing or wrong for this offer"), http.StatusForbidden
	}
	row := h.row(r, p, m, received, *source)
	res := h.Writer.Submit(r.Context(), row)
	if res.Err != nil {
		h.storeLog.failed(h.Log, received, row.OfferID, row.PromoCodeRef, res.Err)
		return fail("storage_unavailable", "conversion not stored; retry later"), http.StatusServiceUnavailable
	}
	h.storeLog.stored(h.Log)
	if res.Duplicate {
		if row.ExplicitStatus && res.ExistingStatus != row.Status {
			return h.changeStatus(r, &row, res)
		}
		return duplicate(res.ExistingID), http.StatusOK
	}
	return reply{Status: row.Status, ConversionID: row.ID.String()}, http.StatusOK
}

func duplicate(id uuid.UUID) reply {
	rep := reply{Status: "duplicate", Reason: "duplicate", Message: "adv_order_id already recorded for this offer and goal"}
	if id != uuid.Nil {
		rep.ConversionID = id.String()
	}
	return rep
}

// changeStatus applies a postback's conv_status to the conversion its order
// already has (SPEC §3 status changes). res is the group commit's answer:
// the order was recorded, with ExistingStatus when it could be read (the
// change itself decides on the status it reads under a lock).
func (h *Handler) changeStatus(r *http.Request, row *Row, res Result) (reply, int) {
	// Not cancelled with the request: a change begun is finished (within
	// ChangeStatus's own timeout), so a retry finds it, as with Submit.
	changes, err := h.Writer.ChangeStatus(context.WithoutCancel(r.Context()), StatusChange{OfferIDs: []int64{row.OfferID}, GoalID: row.GoalID,
		AdvOrderID: row.AdvOrderID, To: row.Status, Source: "postback", At: row.CreatedAt})
	if err != nil {
		h.storeLog.failed(h.Log, row.CreatedAt, row.OfferID, row.PromoCodeRef, err)
		return fail("storage_unavailable", "status change not stored; retry later"), http.StatusServiceUnavailable
	}
	if len(changes) == 0 { // cannot happen: conversions are never deleted
		return duplicate(res.ExistingID), http.StatusOK
	}
	c := changes[0] // (offer, goal, adv_order_id) is unique: one conversion
	id := c.ConversionID.String()
	switch c.Outcome {
	case ChangeApplied:
		return reply{Status: c.To, ConversionID: id, Reason: "status_changed"}, http.StatusOK
	case ChangeInvalid:
		rep := fail("invalid_transition", fmt.Sprintf("conversion is %s; cannot change %s → %s (allowed: %s)", c.From, c.From, c.To, AllowedTransitions))
		rep.ConversionID = id
		return rep, http.StatusConflict
	}
	return duplicate(c.ConversionID), http.StatusOK // ChangeSame: an identical change came first
}

var outcomeReason = map[routing.Outcome]string{
	routing.UnknownCode:    "no such promo code",
	routing.CodeNotOnOffer: "the code is not on this offer",
	routing.CodeNotActive:  "the code is outside its dates or its offer is disabled",
	routing.UnknownGoal:    "no such goal on the offer",
}

func (h *Handler) row(r *http.Request, p Params, m routing.Match, received time.Time, source string) Row {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	status := p.ConvStatus
	if status == "" {
		status = m.Goal.Status
	}
	currency := p.Currency
	if currency == "" {
		currency = m.Offer.Currency
	}
	amount := p.Amount
	if p.AmountText == "0" {
		amount = decimal.Zero
	}
	row := Row{
		ID: id, CreatedAt: received, PromoCode: m.Entry.Code, PromoCodeRef: m.Entry.Ref,
		OfferID: m.Offer.ID, AffiliateID: m.Entry.AffiliateID, GoalID: m.Goal.ID, Status: status,
		Amount: p.AmountText, Payout: m.Goal.Payout.Text(amount), Revenue: m.Goal.Revenue.Text(amount),
		Currency: currency, AdvOrderID: p.AdvOrderID, AdvParams: p.AdvParams, Source: source,
		IP: h.clientIP(r), UserAgent: sanitize(r.UserAgent(), 512), ExplicitStatus: p.ConvStatus != "",
	}
	return row
}

func (h *Handler) clientIP(r *http.Request) string {
	if h.TrustForwardedFor {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip := storableIP(strings.TrimSpace(first)); ip != "" {
				return ip
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return storableIP(host)
}

// storableIP returns s when it is an IP address PostgreSQL's inet accepts as
// written (no allocation), its plain form when it has a zone or is an
// IPv4-mapped IPv6 address, and "" when it is not an address.
func storableIP(s string) string {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return ""
	case a.Is4In6() || a.Zone() != "":
		return a.Unmap().WithZone("").String()
	}
	return s
}

// sanitize makes a header value storable as text: valid UTF-8, no NUL, bounded.
func sanitize(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}

// Header values shared by every reply, assigned under canonical keys instead
// of Header.Set, which allocates a slice per header and reply. net/http copies
// the header map before writing and never modifies a value slice.
var (
	valNoStore = []string{"no-store"}
	valNoCache = []string{"no-cache"}
	valJSON    = []string{"application/json"}
	valGIF     = []string{"image/gif"}
	valJS      = []string{"application/javascript"}
	valHTML    = []string{"text/html; charset=utf-8"}

	statusValues = func() map[string][]string {
		m := map[string][]string{}
		for _, s := range []string{"approved", "pending", "declined", "duplicate", "bad_request", "method_not_allowed",
			"not_ready", "invalid_token", "storage_unavailable", "invalid_transition"} {
			m[s] = []string{s}
		}
		for o := routing.OK; o <= routing.UnknownGoal; o++ {
			m[o.String()] = []string{o.String()}
		}
		return m
	}()
)

// statusValue is the X-Promo-Status value for status.
func statusValue(status string) []string {
	if v, ok := statusValues[status]; ok {
		return v
	}
	return []string{status}
}

func writePixel(w http.ResponseWriter, kind, status string) {
	h := w.Header()
	h["Cache-Control"], h["Pragma"], h["X-Promo-Status"] = valNoStore, valNoCache, statusValue(status)
	switch kind {
	case "img":
		h["Content-Type"] = valGIF
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(gif)
	case "js":
		h["Content-Type"] = valJS
		w.WriteHeader(http.StatusOK)
	default:
		h["Content-Type"] = valHTML
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(iframePage))
	}
}
