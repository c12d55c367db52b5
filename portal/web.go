package portal

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"time"
)

//go:embed templates/page.html
var templates embed.FS

var pageTmpl = template.Must(template.ParseFS(templates, "templates/page.html"))

// maxPageCodes bounds the Promo Codes table of the page.
const maxPageCodes = 500

var filterParams = []string{"promo_code", "offer_id", "affiliate_id", "status", "from", "to"}

type pageData struct {
	SignIn   bool
	Error    string
	F        map[string]string
	Statuses []string
	Page     Page
	Codes    []Code
	CodesCut bool
	CSV      string
	Next     string
	First    string
}

func (s *Server) render(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := pageTmpl.Execute(w, d); err != nil {
		s.log.Error("Rendering the page failed", "err", err)
	}
}

// page is GET /: the Transactions and Promo Codes reports, filtered by the
// query string, server-rendered and usable without JavaScript.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.render(w, http.StatusUnauthorized, pageData{SignIn: true})
		return
	}
	q := r.URL.Query()
	d := pageData{F: map[string]string{}, Statuses: []string{"approved", "pending", "declined"}}
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
		s.render(w, http.StatusBadRequest, d)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	if d.Page, err = s.store.Page(ctx, f); err != nil {
		s.outage.failed("Reading transactions failed", err)
		d.Error = "Transactions cannot be read right now; reload in a moment."
		s.render(w, http.StatusServiceUnavailable, d)
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
	s.render(w, http.StatusOK, d)
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
		s.render(w, status, pageData{SignIn: true, Error: "The sign-in form could not be read."})
		return
	}
	if s.cfg.Token == "" || !equal(r.PostForm.Get("token"), s.cfg.Token) {
		s.render(w, http.StatusUnauthorized, pageData{SignIn: true, Error: "That token is not valid."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.session(), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, MaxAge: -1, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
