package portal

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"promocodes.dev/promo-operator/internal/routing"
)

// The Performance by promo code report (GET /api/v1/reports/promo-codes and
// the page /reports/promo-codes): per folded code and currency, conversions
// by status and the sums of amount, payout and revenue over the conversions
// that still count, and conversions per day of the charted codes.
//
// Definitions (docs/portal.md, "Performance by promo code"):
//   - a row is one code (folded: PROMO22 and promo22 are one code, shown as
//     written) in one currency: money in different currencies is never added;
//   - amount, payout and revenue sum approved and pending conversions.
//     Declined ones (an advertiser's decline, a shop's refund or
//     cancellation) are counted in `declined` and their order value in
//     `declined_amount`, but never in payout or revenue: a refund must not
//     leave a payout standing;
//   - days are UTC days of created_at (when the tracker received the
//     conversion); a conversion declined later stays on the day it came in.
const (
	defaultReportDays  = 30
	maxReportDays      = 366
	defaultReportLimit = 100
	maxReportCodes     = 10 // promo_code= selects at most this many codes
	chartTopCodes      = 5  // without promo_code=, the chart shows the report's first codes
)

// ReportFilter selects the conversions of the report.
type ReportFilter struct {
	From, To    time.Time // From inclusive, To exclusive; always set
	OfferID     int64
	AffiliateID int64
	// Codes are folded codes to report on (and to chart); empty: every code.
	Codes []string
	Limit int // 0: defaultReportLimit (JSON) or every row (CSV)
}

// ParseReportFilter reads the query parameters of the report. now fixes the
// default range: the 30 UTC days through today.
func ParseReportFilter(q url.Values, now time.Time) (ReportFilter, error) {
	var f ReportFilter
	var err error
	if f.OfferID, err = positiveID(q, "offer_id"); err != nil {
		return f, err
	}
	if f.AffiliateID, err = positiveID(q, "affiliate_id"); err != nil {
		return f, err
	}
	if f.From, err = instant(q, "from", false); err != nil {
		return f, err
	}
	if f.To, err = instant(q, "to", true); err != nil {
		return f, err
	}
	switch {
	case f.To.IsZero() && f.From.IsZero():
		f.To = utcDay(now).AddDate(0, 0, 1)
		f.From = f.To.AddDate(0, 0, -defaultReportDays)
	case f.To.IsZero():
		f.To = f.From.AddDate(0, 0, defaultReportDays)
	case f.From.IsZero():
		f.From = f.To.AddDate(0, 0, -defaultReportDays)
	}
	if !f.To.After(f.From) {
		return f, &FilterError{"to", "must be after from"}
	}
	if f.To.Sub(f.From) > maxReportDays*24*time.Hour {
		return f, &FilterError{"to", fmt.Sprintf("the range from..to spans at most %d days", maxReportDays)}
	}
	seen := map[string]bool{}
	for _, v := range q["promo_code"] {
		for _, c := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !routing.ValidCode(c) {
				return f, &FilterError{"promo_code", fmt.Sprintf("%q: a code is 1-64 Latin letters and digits (separate several with commas)", c)}
			}
			if c = routing.Fold(c); !seen[c] {
				seen[c] = true
				f.Codes = append(f.Codes, c)
			}
		}
	}
	if len(f.Codes) > maxReportCodes {
		return f, &FilterError{"promo_code", fmt.Sprintf("at most %d codes at a time", maxReportCodes)}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return f, &FilterError{"limit", fmt.Sprintf("must be a whole number from 1 to %d", maxLimit)}
		}
		f.Limit = n
	}
	return f, nil
}

func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Days are the UTC dates the range touches, first to last.
func (f ReportFilter) Days() []time.Time {
	var days []time.Time
	for d := utcDay(f.From); d.Before(f.To); d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	return days
}

// CodeReport is one row of the report: one code in one currency. Counts are
// numbers, money decimal strings exactly as PostgreSQL summed them.
type CodeReport struct {
	Code        string `json:"code"`
	Currency    string `json:"currency"`
	Conversions int64  `json:"conversions"`
	Approved    int64  `json:"approved"`
	Pending     int64  `json:"pending"`
	Declined    int64  `json:"declined"`
	// Amount, Payout and Revenue sum approved and pending conversions.
	Amount  string `json:"amount"`
	Payout  string `json:"payout"`
	Revenue string `json:"revenue"`
	// DeclinedAmount is the order value of the declined conversions.
	DeclinedAmount string `json:"declined_amount"`

	folded string
}

// ReportColumns are the report's CSV header, in the order of CodeReport.Record.
var ReportColumns = []string{"code", "currency", "conversions", "approved", "pending", "declined",
	"amount", "payout", "revenue", "declined_amount"}

// reportNumeric marks every column but code and currency as our own numbers.
var reportNumeric = []bool{false, false, true, true, true, true, true, true, true, true}

// Record is the row as CSV.
func (c *CodeReport) Record(buf []string) []string {
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	return append(buf[:0], c.Code, c.Currency, i(c.Conversions), i(c.Approved), i(c.Pending), i(c.Declined),
		c.Amount, c.Payout, c.Revenue, c.DeclinedAmount)
}

// DayCount is one point of a chart series.
type DayCount struct {
	Date        string `json:"date"` // YYYY-MM-DD, UTC
	Conversions int64  `json:"conversions"`
}

// Series is the conversions per day of one code, every day of the range,
// zeros included, all statuses and currencies counted.
type Series struct {
	Code  string     `json:"code"`
	Total int64      `json:"total"`
	Days  []DayCount `json:"days"`
}

// Report is the answer of GET /api/v1/reports/promo-codes.
type Report struct {
	From  time.Time    `json:"from"`
	To    time.Time    `json:"to"`
	Items []CodeReport `json:"items"`
	// Truncated: more rows matched than the limit; narrow the filters.
	Truncated bool `json:"truncated"`
	// Series are the charted codes: the selected ones, else the first five
	// codes of Items.
	Series []Series `json:"series"`
}

// where renders f's conditions; every report query starts from the
// created_at range, so it is served by conversions_created (or, with an
// affiliate, conversions_affiliate; with codes, conversions_code).
func (f ReportFilter) where(arg func(any) string) string {
	w := []string{"created_at >= " + arg(f.From), "created_at < " + arg(f.To)}
	if f.OfferID != 0 {
		w = append(w, "offer_id = "+arg(f.OfferID))
	}
	if f.AffiliateID != 0 {
		w = append(w, "affiliate_id = "+arg(f.AffiliateID))
	}
	if len(f.Codes) > 0 {
		w = append(w, "upper(promo_code) = ANY("+arg(f.Codes)+")")
	}
	return strings.Join(w, " AND ")
}

func argList() (*[]any, func(any) string) {
	var args []any
	return &args, func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
}

// rowsQuery is the per code and currency aggregation. Rows of one code stay
// together: ordered by the code's conversions over every currency (most
// first), then the folded code, then the currency. COLLATE "C" keeps the
// order and the spelling shown (the smallest: PROMO22 before Promo22)
// independent of the database's collation.
func (f ReportFilter) rowsQuery(limit int) (string, []any) {
	args, arg := argList()
	sql := `WITH g AS (
  SELECT upper(promo_code) COLLATE "C" AS folded, min(promo_code COLLATE "C") AS code, currency,
         count(*) AS conversions,
         count(*) FILTER (WHERE status = 'approved') AS approved,
         count(*) FILTER (WHERE status = 'pending') AS pending,
         count(*) FILTER (WHERE status = 'declined') AS declined,
         coalesce(sum(amount) FILTER (WHERE status <> 'declined'), 0) AS amount,
         coalesce(sum(payout) FILTER (WHERE status <> 'declined'), 0) AS payout,
         coalesce(sum(revenue) FILTER (WHERE status <> 'declined'), 0) AS revenue,
         coalesce(sum(amount) FILTER (WHERE status = 'declined'), 0) AS declined_amount
    FROM conversions
   WHERE ` + f.where(arg) + `
   GROUP BY 1, currency
)
SELECT folded, code, currency, conversions, approved, pending, declined,
       amount::text, payout::text, revenue::text, declined_amount::text
  FROM g
 ORDER BY sum(conversions) OVER (PARTITION BY folded) DESC, folded, currency COLLATE "C"`
	if limit > 0 {
		sql += "\n LIMIT " + arg(limit)
	}
	return sql, *args
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// EachReportRow calls fn for every row of the report (limit 0: all),
// streaming them from PostgreSQL.
func (s *Store) EachReportRow(ctx context.Context, f ReportFilter, limit int, fn func(*CodeReport) error) error {
	return eachReportRow(ctx, s.Pool, f, limit, fn)
}

func eachReportRow(ctx context.Context, q querier, f ReportFilter, limit int, fn func(*CodeReport) error) error {
	sql, args := f.rowsQuery(limit)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var c CodeReport
	for rows.Next() {
		if err := rows.Scan(&c.folded, &c.Code, &c.Currency, &c.Conversions, &c.Approved, &c.Pending, &c.Declined,
			&c.Amount, &c.Payout, &c.Revenue, &c.DeclinedAmount); err != nil {
			return err
		}
		if err := fn(&c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PromoCodeReport runs the report: up to f.Limit rows (default 100) and the
// series of the charted codes, both read in one read-only REPEATABLE READ
// transaction, so the chart's totals are the table's even while conversions
// arrive.
func (s *Store) PromoCodeReport(ctx context.Context, f ReportFilter) (Report, error) {
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Report{}, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	limit := f.Limit
	if limit == 0 {
		limit = defaultReportLimit
	}
	r := Report{From: f.From, To: f.To, Items: []CodeReport{}, Series: []Series{}}
	err = eachReportRow(ctx, tx, f, limit+1, func(c *CodeReport) error {
		if len(r.Items) == limit {
			r.Truncated = true
			return nil
		}
		r.Items = append(r.Items, *c)
		return nil
	})
	if err != nil {
		return Report{}, err
	}

	// The charted codes, in the report's order, shown as written.
	spelling := map[string]string{}
	var charted []string
	for _, c := range r.Items {
		if _, ok := spelling[c.folded]; !ok {
			spelling[c.folded] = c.Code
			charted = append(charted, c.folded)
		}
	}
	if len(f.Codes) > 0 {
		charted = f.Codes // every selected code, with or without conversions
	} else if len(charted) > chartTopCodes {
		charted = charted[:chartTopCodes]
	}
	if len(charted) == 0 {
		return r, nil
	}
	days := f.Days()
	index := make(map[string]int, len(days))
	for i, d := range days {
		index[d.Format(time.DateOnly)] = i
	}
	r.Series = make([]Series, 0, len(charted)) // bySeries points into it: no reallocation
	bySeries := make(map[string]*Series, len(charted))
	for _, folded := range charted {
		name := spelling[folded]
		if name == "" {
			name = folded
		}
		sr := Series{Code: name, Days: make([]DayCount, len(days))}
		for i, d := range days {
			sr.Days[i].Date = d.Format(time.DateOnly)
		}
		r.Series = append(r.Series, sr)
		bySeries[folded] = &r.Series[len(r.Series)-1]
	}
	cf := f
	cf.Codes = charted
	args, arg := argList()
	sql := `SELECT upper(promo_code), to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*)
  FROM conversions
 WHERE ` + cf.where(arg) + `
 GROUP BY 1, 2`
	rows, err := tx.Query(ctx, sql, *args...)
	if err != nil {
		return Report{}, err
	}
	defer rows.Close()
	var folded, day string
	var n int64
	for rows.Next() {
		if err := rows.Scan(&folded, &day, &n); err != nil {
			return Report{}, err
		}
		sr, i, ok := bySeries[folded], 0, false
		if sr != nil {
			i, ok = index[day]
		}
		if !ok {
			return Report{}, fmt.Errorf("conversions of %s on %s: outside the report's series", folded, day)
		}
		sr.Days[i].Conversions = n
		sr.Total += n
	}
	if err := rows.Err(); err != nil {
		return Report{}, err
	}
	return r, nil
}
