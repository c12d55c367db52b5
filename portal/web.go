package portal

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

//go:embed templates/*.html
var templates embed.FS

// Each view is the layout (head, header, sign-in form) around its content.
var (
	pageTmpl        = view("transactions.html")
	reportTmpl      = view("report.html")
	transactionTmpl = view("transaction.html")
)

func view(content string) *template.Template {
	return template.Must(template.ParseFS(templates, "templates/layout.html", "templates/"+content))
}

// maxPageCodes bounds the Promo Codes table of the page.
const maxPageCodes = 500

var filterParams = []string{"promo_code", "offer_id", "affiliate_id", "status", "source", "from", "to"}

type pageData struct {
	View     string // transactions, report, transaction: the current nav entry
	SignIn   bool
	NextPath string // where signing in returns to
	Error    string
	F        map[string]string
	Statuses []string
	Sources  []string
	Page     Page
	Codes    []Code
	CodesCut bool
	CSV      string
	Next     string
	First    string
	// The promo-code report.
	Report  *Report
	Chart   template.HTML
	LastDay string
	// One conversion.
	Detail *TransactionDetail
}

// signIn renders the sign-in form, which returns to the page asked for.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	s.render(w, pageTmpl, http.StatusUnauthorized, pageData{SignIn: true, NextPath: r.URL.RequestURI()})
}

func (s *Server) render(w http.ResponseWriter, tmpl *template.Template, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := tmpl.Execute(w, d); err != nil {
		s.log.Error("Rendering the page failed", "err", err)
	}
}

// page is GET /: the Transactions and Promo Codes reports, filtered by the
// query string, server-rendered and usable without JavaScript.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.signIn(w, r)
		return
	}
	q := r.URL.Query()
	d := pageData{View: "transactions", F: map[string]string{}, Statuses: []string{"approved", "pending", "declined"}, Sources: Sources}
	kept := url.Values{}
	for _, p := range filterParams {
		if v := q.Get(p); v != "" {
			d.F[p] = v
			kept.Set(p, v)
		}
	}
	f, err := ParseTxFilter(q)
	if err != nil {
		d.Error = "Fix the filter " + err.Error()
		s.render(w, pageTmpl, http.StatusBadRequest, d)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	if d.Page, err = s.store.Page(ctx, f); err != nil {
		s.outage.failed("Reading transactions failed", err)
		d.Error = "Transactions cannot be read right now; reload in a moment."
		s.render(w, pageTmpl, http.StatusServiceUnavailable, d)
		return
	}
	codes, err := s.codes.List(ctx, CodeFilter{AffiliateID: f.AffiliateID, OfferID: f.OfferID, Code: f.PromoCode})
	if err != nil {
		s.outage.failed("Listing promo codes failed", err)
		d.Error = "Promo codes cannot be read right now; reload in a moment."
	}
	if len(codes) > maxPageCodes {
		codes, d.CodesCut = codes[:maxPageCodes], true
	}
	d.Codes = codes
	if err == nil {
		s.outage.ok()
	}

	csv := maps.Clone(kept)
	csv.Set("format", "csv")
	d.CSV = "/api/v1/transactions?" + csv.Encode()
	if d.Page.NextCursor != "" {
		next := maps.Clone(kept)
		next.Set("cursor", d.Page.NextCursor)
		d.Next = "/?" + next.Encode()
	}
	if f.After != nil {
		d.First = "/?" + kept.Encode()
	}
	// Date inputs only take YYYY-MM-DD; other forms stay in the URL, not the form.
	for _, p := range []string{"from", "to"} {
		if _, err := time.Parse(time.DateOnly, d.F[p]); err != nil {
			delete(d.F, p)
		}
	}
	s.render(w, pageTmpl, http.StatusOK, d)
}

// login exchanges the token typed into the sign-in form for a session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		status := http.StatusBadRequest
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		s.render(w, pageTmpl, status, pageData{SignIn: true, Error: "The sign-in form could not be read."})
		return
	}
	next := localPath(r.PostForm.Get("next"))
	if s.cfg.Token == "" || !equal(r.PostForm.Get("token"), s.cfg.Token) {
		s.render(w, pageTmpl, http.StatusUnauthorized, pageData{SignIn: true, NextPath: next, Error: "That token is not valid."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.session(), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// localPath is next when it is a path on this server, else "/": signing in
// never redirects elsewhere (`//evil.example`, `https://…`, `/\evil`).
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") ||
		u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, MaxAge: -1, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// reportPage is GET /reports/promo-codes: the Performance by promo code
// section — filters, the chart and the table — server-rendered.
func (s *Server) reportPage(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.signIn(w, r)
		return
	}
	q := r.URL.Query()
	d := pageData{View: "report", F: map[string]string{}}
	kept := url.Values{}
	for _, p := range []string{"from", "to", "offer_id", "affiliate_id", "promo_code"} {
		if v := strings.Join(q[p], ","); v != "" {
			d.F[p] = v
			kept.Set(p, v)
		}
	}
	f, err := ParseReportFilter(q, s.cfg.Now())
	if err != nil {
		d.Error = "Fix the filter " + err.Error()
		s.render(w, reportTmpl, http.StatusBadRequest, d)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	rep, err := s.store.PromoCodeReport(ctx, f)
	if err != nil {
		s.outage.failed("Reading the promo-code report failed", err)
		d.Error = "The report cannot be read right now; reload in a moment."
		s.render(w, reportTmpl, http.StatusServiceUnavailable, d)
		return
	}
	s.outage.ok()
	d.Report = &rep
	d.Chart = Chart(rep.Series, rep.From, rep.To)
	d.LastDay = rep.To.Add(-time.Nanosecond).UTC().Format(time.DateOnly)
	csv := maps.Clone(kept)
	csv.Set("format", "csv")
	d.CSV = "/api/v1/reports/promo-codes?" + csv.Encode()
	// The form shows the range the report covers, defaults included, when
	// it is whole days.
	if f.From.Equal(utcDay(f.From)) && f.To.Equal(utcDay(f.To)) {
		d.F["from"], d.F["to"] = f.From.Format(time.DateOnly), d.LastDay
	} else {
		delete(d.F, "from")
		delete(d.F, "to")
	}
	s.render(w, reportTmpl, http.StatusOK, d)
}

// transactionPage is GET /transactions/{id}: one conversion and its status
// history, linked from each row of the Transactions table.
func (s *Server) transactionPage(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.signIn(w, r)
		return
	}
	d := pageData{View: "transaction"}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		d.Error = "That is not a conversion id."
		s.render(w, transactionTmpl, http.StatusBadRequest, d)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	d.Detail, err = s.store.Transaction(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		s.outage.ok()
		d.Error = "No conversion has id " + id.String() + "."
		s.render(w, transactionTmpl, http.StatusNotFound, d)
	case err != nil:
		s.outage.failed("Reading a transaction failed", err)
		d.Error = "The conversion cannot be read right now; reload in a moment."
		s.render(w, transactionTmpl, http.StatusServiceUnavailable, d)
	default:
		s.outage.ok()
		s.render(w, transactionTmpl, http.StatusOK, d)
	}
}
