package tracker

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

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
}

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
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Promo-Status", rep.Status)
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	}
	h.Metrics.Latency.WithLabelValues(source).Observe(time.Since(received).Seconds())
}

// track decides the reply. Errors carry their SPEC §3 status as reply.Status
// and a human explanation as reply.Reason.
func (h *Handler) track(w http.ResponseWriter, r *http.Request, received time.Time, source *string) (reply, int) {
	if len(r.URL.RawQuery) > maxQueryBytes {
		return fail("bad_request", "query string longer than 8 KiB"), http.StatusRequestURITooLong
	}
	values, err := url.ParseQuery(r.URL.RawQuery)
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
		values = r.Form
		if ret := values.Get("return"); ret == "js" || ret == "img" || ret == "iframe" {
			*source = ret
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		return fail("method_not_allowed", "use GET or POST"), http.StatusMethodNotAllowed
	}
	p, err := ParseParams(values)
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
	switch {
	case res.Err != nil:
		h.Log.Error("Failed to store conversion", "offer", row.OfferID, "code_ref", row.PromoCodeRef, "err", res.Err)
		return fail("storage_unavailable", "conversion not stored; retry later"), http.StatusServiceUnavailable
	case res.Duplicate:
		rep := reply{Status: "duplicate", Reason: "duplicate", Message: "adv_order_id already recorded for this offer and goal"}
		if res.ExistingID != uuid.Nil {
			rep.ConversionID = res.ExistingID.String()
		}
		return rep, http.StatusOK
	}
	return reply{Status: row.Status, ConversionID: row.ID.String()}, http.StatusOK
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
		IP: h.clientIP(r), UserAgent: sanitize(r.UserAgent(), 512),
	}
	return row
}

func (h *Handler) clientIP(r *http.Request) string {
	if h.TrustForwardedFor {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first := strings.TrimSpace(strings.Split(xff, ",")[0])
			if ip := net.ParseIP(first); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return ""
}

// sanitize makes a header value storable as text: valid UTF-8, no NUL, bounded.
func sanitize(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}

func writePixel(w http.ResponseWriter, kind, status string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Promo-Status", status)
	switch kind {
	case "img":
		h.Set("Content-Type", "image/gif")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(gif)
	case "js":
		h.Set("Content-Type", "application/javascript")
		w.WriteHeader(http.StatusOK)
	default:
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(iframePage))
	}
}
