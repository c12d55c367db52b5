// Package portal is the read-only reports service of SPEC §7: the affiliate's
// promo-code listing, the transactions API (JSON pages with a stable cursor,
// or a streamed CSV), a conversion with its status history, the Performance
// by promo code report (JSON or CSV) and server-rendered web pages over all
// of them, the report's chart an inline SVG.
package portal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a portal server.
type Config struct {
	// Token is the bearer token API clients send; people sign in with it once
	// and get a session cookie derived from it.
	Token string
	// QueryTimeout bounds a JSON page or a web page's queries.
	QueryTimeout time.Duration
	// Ready reports whether the code cache has synced.
	Ready func() bool
	// Now is the clock fixing the report's default range; nil: time.Now.
	Now func() time.Time
}

// Server serves the portal.
type Server struct {
	cfg      Config
	store    *Store
	codes    *Codes
	log      *slog.Logger
	outage   *outageLog
	Registry *prometheus.Registry
	csvRows  prometheus.Counter
	repRows  prometheus.Counter
	handler  http.Handler
}

// NewServer builds the portal's handler over a conversions store and a code source.
func NewServer(cfg Config, store *Store, codes *Codes, log *slog.Logger) *Server {
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, store: store, codes: codes, log: log, Registry: prometheus.NewRegistry(), outage: newOutageLog(log)}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.csvRows = prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_portal_csv_rows_total", Help: "Transactions streamed as CSV."})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promo_portal_requests_total", Help: "Requests by handler and status code."}, []string{"handler", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "promo_portal_request_duration_seconds", Help: "Time to the last byte, by handler.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"handler"})
	s.repRows = prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_portal_report_csv_rows_total", Help: "Rows of the promo-code report streamed as CSV."})
	s.Registry.MustRegister(s.csvRows, s.repRows, requests, latency)

	mux := http.NewServeMux()
	route := func(pattern, name string, h http.HandlerFunc) {
		labels := prometheus.Labels{"handler": name}
		mux.Handle(pattern, promhttp.InstrumentHandlerCounter(requests.MustCurryWith(labels),
			promhttp.InstrumentHandlerDuration(latency.MustCurryWith(labels), h)))
	}
	route("GET /api/v1/affiliates/{affiliateID}/promo-codes", "promo_codes", s.authed(s.affiliateCodes))
	route("GET /api/v1/transactions", "transactions", s.authed(s.transactions))
	route("GET /api/v1/transactions/{id}", "transaction", s.authed(s.transaction))
	route("GET /api/v1/reports/promo-codes", "report", s.authed(s.report))
	route("GET /{$}", "page", s.page)
	route("GET /transactions/{id}", "transaction_page", s.transactionPage)
	route("GET /reports/promo-codes", "report_page", s.reportPage)
	route("POST /login", "login", s.login)
	route("POST /logout", "logout", s.logout)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	s.handler = securityHeaders(mux)
	return s
}

// Handler is the portal's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves on l until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // CSV exports extend their own deadline as they stream
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil && !s.cfg.Ready() {
		http.Error(w, "promo codes not synced yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Pool.Ping(ctx); err != nil {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// --- auth -------------------------------------------------------------------

const sessionCookie = "promo_portal_session"

// session is the cookie value for people signed in with the token: an HMAC of
// the token, so the cookie never carries the token itself and rotating the
// token signs everyone out.
func (s *Server) session() string {
	m := hmac.New(sha256.New, []byte(s.cfg.Token))
	m.Write([]byte("promo-portal session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// authorized accepts `Authorization: Bearer <token>` or the session cookie.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return false
	}
	if h := r.Header.Get("Authorization"); h != "" {
		token, ok := strings.CutPrefix(h, "Bearer ")
		return ok && equal(strings.TrimSpace(token), s.cfg.Token)
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return equal(c.Value, s.session())
	}
	return false
}

func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="promo-portal"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token>")
			return
		}
		h(w, r)
	}
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// --- API --------------------------------------------------------------------

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{code, message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (s *Server) affiliateCodes(w http.ResponseWriter, r *http.Request) {
	aff, err := strconv.ParseInt(r.PathValue("affiliateID"), 10, 64)
	if err != nil || aff < 1 {
		writeError(w, http.StatusBadRequest, "bad_request", "affiliateID: must be a positive whole number")
		return
	}
	offerID, err := positiveID(r.URL.Query(), "offer_id")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	codes, err := s.codes.List(r.Context(), CodeFilter{AffiliateID: aff, OfferID: offerID, Owned: true})
	if err != nil {
		s.outage.failed("Listing promo codes failed", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "promo codes cannot be read right now; retry")
		return
	}
	s.outage.ok()
	writeJSON(w, http.StatusOK, struct {
		Items []Code `json:"items"`
	}{codes})
}

func wantsCSV(r *http.Request) bool {
	return r.URL.Query().Get("format") == "csv" || strings.Contains(r.Header.Get("Accept"), "text/csv")
}

func (s *Server) transactions(w http.ResponseWriter, r *http.Request) {
	f, err := ParseTxFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if wantsCSV(r) {
		s.streamTransactionsCSV(w, r, f)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	page, err := s.store.Page(ctx, f)
	if err != nil {
		s.outage.failed("Reading transactions failed", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "transactions cannot be read right now; retry")
		return
	}
	s.outage.ok()
	writeJSON(w, http.StatusOK, page)
}

// transaction is GET /api/v1/transactions/{id}: the conversion and its
// status history.
func (s *Server) transaction(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "id: must be a conversion id (a UUID such as 01a20ec8-d09f-7b94-ba55-a69edaf4feaa)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	d, err := s.store.Transaction(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		s.outage.ok()
		writeError(w, http.StatusNotFound, "not_found", "no conversion has id "+id.String())
	case err != nil:
		s.outage.failed("Reading a transaction failed", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the transaction cannot be read right now; retry")
	default:
		s.outage.ok()
		writeJSON(w, http.StatusOK, d)
	}
}

// report is GET /api/v1/reports/promo-codes: JSON, or every row as CSV.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	f, err := ParseReportFilter(r.URL.Query(), s.cfg.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if wantsCSV(r) {
		s.streamCSV(w, r, "promo-codes.csv", "the report", ReportColumns, reportNumeric, s.repRows, func(write func([]string) error) error {
			var rec []string
			return s.store.EachReportRow(r.Context(), f, f.Limit, func(c *CodeReport) error {
				rec = c.Record(rec)
				return write(rec)
			})
		})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	rep, err := s.store.PromoCodeReport(ctx, f)
	if err != nil {
		s.outage.failed("Reading the promo-code report failed", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the report cannot be read right now; retry")
		return
	}
	s.outage.ok()
	writeJSON(w, http.StatusOK, rep)
}

// streamTransactionsCSV writes every matching transaction (or f.Limit of them).
func (s *Server) streamTransactionsCSV(w http.ResponseWriter, r *http.Request, f TxFilter) {
	s.streamCSV(w, r, "transactions.csv", "transactions", Columns, numericColumns, s.csvRows, func(write func([]string) error) error {
		var rec []string
		return s.store.Each(r.Context(), f, f.Limit, func(t *Transaction) error {
			rec = t.Record(rec)
			return write(rec)
		})
	})
}

// streamCSV writes header and the rows each produces as CSV, flushing as it
// goes: a million rows pass through a few kilobytes of buffer. Each flush
// pushes the write deadline forward, so a long export is bounded by the
// client's pace, not a fixed timeout.
func (s *Server) streamCSV(w http.ResponseWriter, r *http.Request, filename, what string, header []string, numeric []bool,
	rows prometheus.Counter, each func(write func([]string) error) error) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	rc := http.NewResponseController(w)
	cw := newCSVWriter(w, numeric)
	_ = cw.Write(header)
	n := 0
	err := each(func(rec []string) error {
		if err := cw.Write(rec); err != nil {
			return err
		}
		n++
		if n%1000 == 0 {
			if err := cw.Flush(); err != nil {
				return err
			}
			_ = rc.SetWriteDeadline(time.Now().Add(60 * time.Second))
			_ = rc.Flush()
		}
		return nil
	})
	rows.Add(float64(n))
	switch {
	case err == nil:
		s.outage.ok()
		_ = cw.Flush()
	case n == 0:
		// Nothing has reached the client yet: answer with a proper error.
		s.outage.failed("CSV export failed", err)
		w.Header().Del("Content-Disposition")
		writeError(w, http.StatusServiceUnavailable, "unavailable", what+" cannot be read right now; retry")
	case !errors.Is(err, context.Canceled):
		// Rows are gone already; abort the response so the client sees an
		// incomplete transfer, never a short file that looks whole.
		s.outage.failed("CSV export stopped after "+strconv.Itoa(n)+" rows", err)
		panic(http.ErrAbortHandler)
	}
}
