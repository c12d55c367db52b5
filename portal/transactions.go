package portal

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"promocodes.dev/promo-operator/internal/pgrole"
	"promocodes.dev/promo-operator/internal/routing"
)

const (
	defaultLimit = 50
	maxLimit     = 1000
)

// TxFilter selects conversions (SPEC §7). Zero fields do not filter.
type TxFilter struct {
	PromoCode   string // case-insensitive
	OfferID     int64
	AffiliateID int64
	Status      string
	Source      string
	From, To    time.Time // From inclusive, To exclusive
	Limit       int       // 0: defaultLimit (JSON) or everything (CSV)
	After       *Cursor   // rows strictly older than this
}

// Cursor is a position in the newest-first order: (created_at, id) of the
// last row of a page. Keyset paging: no offset scans, stable while rows are
// added (new rows sort before it).
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// String encodes the cursor as an opaque token.
func (c Cursor) String() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a token made by Cursor.String.
func ParseCursor(s string) (*Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("cursor is not one this service handed out")
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	us, err1 := strconv.ParseInt(micros, 10, 64)
	u, err2 := uuid.Parse(id)
	if !ok || err1 != nil || err2 != nil {
		return nil, errors.New("cursor is not one this service handed out")
	}
	return &Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: u}, nil
}

// Sources are the values of conversions.source (SPEC §4): how the tracker
// got the conversion — a postback, a pixel, or a shop's webhook (SPEC §8).
var Sources = []string{"postback", "js", "img", "iframe", "shopify", "woocommerce"}

// FilterError is a query parameter the caller must fix; it becomes a 400.
type FilterError struct{ Param, Message string }

func (e *FilterError) Error() string { return e.Param + ": " + e.Message }

// ParseTxFilter reads the query parameters of GET /api/v1/transactions.
func ParseTxFilter(q url.Values) (TxFilter, error) {
	var f TxFilter
	if v := q.Get("promo_code"); v != "" {
		if !routing.ValidCode(v) {
			return f, &FilterError{"promo_code", "must be 1-64 Latin letters and digits"}
		}
		f.PromoCode = v
	}
	var err error
	if f.OfferID, err = positiveID(q, "offer_id"); err != nil {
		return f, err
	}
	if f.AffiliateID, err = positiveID(q, "affiliate_id"); err != nil {
		return f, err
	}
	switch v := q.Get("status"); v {
	case "", "approved", "pending", "declined":
		f.Status = v
	default:
		return f, &FilterError{"status", "must be approved, pending or declined"}
	}
	if v := q.Get("source"); v != "" {
		if !slices.Contains(Sources, v) {
			return f, &FilterError{"source", "must be one of " + strings.Join(Sources, ", ")}
		}
		f.Source = v
	}
	if f.From, err = instant(q, "from", false); err != nil {
		return f, err
	}
	if f.To, err = instant(q, "to", true); err != nil {
		return f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return f, &FilterError{"to", "must be after from"}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return f, &FilterError{"limit", fmt.Sprintf("must be a whole number from 1 to %d", maxLimit)}
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := ParseCursor(v)
		if err != nil {
			return f, &FilterError{"cursor", err.Error()}
		}
		f.After = c
	}
	return f, nil
}

func positiveID(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, &FilterError{name, "must be a positive whole number"}
	}
	return n, nil
}

// instant parses RFC 3339 or a bare date (UTC). A bare date in `to` means the
// end of that day, so to=2026-11-24 includes the 24th.
func instant(q url.Values, name string, endOfDay bool) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		if endOfDay {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	return time.Time{}, &FilterError{name, "must be a date (2026-11-24) or an RFC 3339 time (2026-11-24T15:04:05Z)"}
}

// Transaction is one conversion as the portal shows it. Amounts are decimal
// strings, exactly as stored. ip and user_agent stay in the database: personal
// data that neither affiliates nor the report pages need.
type Transaction struct {
	ID           string    `json:"id"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"` // the last status change; = created_at until one
	PromoCode    string    `json:"promo_code"`
	PromoCodeRef string    `json:"promo_code_ref"`
	OfferID      int64     `json:"offer_id"`
	AffiliateID  int64     `json:"affiliate_id"`
	GoalID       int64     `json:"goal_id"`
	Status       string    `json:"status"`
	Amount       string    `json:"amount"`
	Payout       string    `json:"payout"`
	Revenue      string    `json:"revenue"`
	Currency     string    `json:"currency"`
	AdvOrderID   string    `json:"adv_order_id,omitempty"`
	AdvParam1    string    `json:"adv_param1,omitempty"`
	AdvParam2    string    `json:"adv_param2,omitempty"`
	AdvParam3    string    `json:"adv_param3,omitempty"`
	AdvParam4    string    `json:"adv_param4,omitempty"`
	AdvParam5    string    `json:"adv_param5,omitempty"`
	Source       string    `json:"source"`

	cursor Cursor
}

// Columns are the CSV header, in the order of Transaction.Record.
var Columns = []string{"id", "created_at", "promo_code", "promo_code_ref", "offer_id", "affiliate_id", "goal_id",
	"status", "amount", "payout", "revenue", "currency", "adv_order_id",
	"adv_param1", "adv_param2", "adv_param3", "adv_param4", "adv_param5", "source", "updated_at"}

// numericColumns marks the Columns we format from bigint and numeric values
// (ids, amount, payout, revenue): not caller text, so the CSV writer does not
// prefix a negative number (see csvWriter).
var numericColumns = func() []bool {
	n := make([]bool, len(Columns))
	for i, c := range Columns {
		switch c {
		case "offer_id", "affiliate_id", "goal_id", "amount", "payout", "revenue":
			n[i] = true
		}
	}
	return n
}()

// Record is the transaction as a CSV row.
func (t *Transaction) Record(buf []string) []string {
	buf = append(buf[:0], t.ID, t.CreatedAt.UTC().Format(time.RFC3339Nano), t.PromoCode, t.PromoCodeRef,
		strconv.FormatInt(t.OfferID, 10), strconv.FormatInt(t.AffiliateID, 10), strconv.FormatInt(t.GoalID, 10),
		t.Status, t.Amount, t.Payout, t.Revenue, t.Currency, t.AdvOrderID,
		t.AdvParam1, t.AdvParam2, t.AdvParam3, t.AdvParam4, t.AdvParam5, t.Source, t.UpdatedAt.UTC().Format(time.RFC3339Nano))
	return buf
}

// Cursor is the position after this transaction.
func (t *Transaction) Cursor() Cursor { return t.cursor }

// Store reads conversions.
type Store struct{ Pool *pgxpool.Pool }

// query builds the SELECT for f. The order (created_at DESC, id DESC) is
// served by the conversions_created index, and with a code or affiliate
// filter by conversions_code / conversions_affiliate.
func (f TxFilter) query(limit int) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.PromoCode != "" {
		where = append(where, "upper(promo_code) = "+arg(strings.ToUpper(f.PromoCode)))
	}
	if f.OfferID != 0 {
		where = append(where, "offer_id = "+arg(f.OfferID))
	}
	if f.AffiliateID != 0 {
		where = append(where, "affiliate_id = "+arg(f.AffiliateID))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(f.Status))
	}
	if f.Source != "" {
		where = append(where, "source = "+arg(f.Source))
	}
	if !f.From.IsZero() {
		where = append(where, "created_at >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "created_at < "+arg(f.To))
	}
	if f.After != nil {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(f.After.CreatedAt), arg(f.After.ID)))
	}
	sql := "SELECT " + txColumns + "\n  FROM conversions"
	if len(where) > 0 {
		sql += "\n WHERE " + strings.Join(where, " AND ")
	}
	sql += "\n ORDER BY created_at DESC, id DESC"
	if limit > 0 {
		sql += "\n LIMIT " + arg(limit)
	}
	return sql, args
}

// txColumns are the columns Transaction.scan reads.
const txColumns = `id, created_at, updated_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id, status,
       amount::text, payout::text, revenue::text, currency, coalesce(adv_order_id, ''),
       coalesce(adv_param1, ''), coalesce(adv_param2, ''), coalesce(adv_param3, ''), coalesce(adv_param4, ''), coalesce(adv_param5, ''),
       source`

// scan reads one row of txColumns into t.
func (t *Transaction) scan(row pgx.Row) error {
	var id uuid.UUID
	if err := row.Scan(&id, &t.CreatedAt, &t.UpdatedAt, &t.PromoCode, &t.PromoCodeRef, &t.OfferID, &t.AffiliateID, &t.GoalID, &t.Status,
		&t.Amount, &t.Payout, &t.Revenue, &t.Currency, &t.AdvOrderID,
		&t.AdvParam1, &t.AdvParam2, &t.AdvParam3, &t.AdvParam4, &t.AdvParam5, &t.Source); err != nil {
		return err
	}
	t.ID = id.String()
	t.cursor = Cursor{CreatedAt: t.CreatedAt, ID: id}
	return nil
}

// Each calls fn for every transaction matching f, newest first, streaming
// rows from PostgreSQL without holding them: memory stays flat however many
// match. limit 0 means all.
func (s *Store) Each(ctx context.Context, f TxFilter, limit int, fn func(*Transaction) error) error {
	sql, args := f.query(limit)
	rows, err := s.Pool.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var t Transaction
	for rows.Next() {
		if err := t.scan(rows); err != nil {
			return err
		}
		if err := fn(&t); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Page is one page of transactions and the cursor of the next, if any.
type Page struct {
	Items      []Transaction `json:"items"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// Page returns up to f.Limit (default 50) transactions.
func (s *Store) Page(ctx context.Context, f TxFilter) (Page, error) {
	limit := f.Limit
	if limit == 0 {
		limit = defaultLimit
	}
	p := Page{Items: make([]Transaction, 0, limit)}
	more := false
	err := s.Each(ctx, f, limit+1, func(t *Transaction) error {
		if len(p.Items) == limit {
			more = true
			return nil
		}
		p.Items = append(p.Items, *t)
		return nil
	})
	if err != nil {
		return Page{}, err
	}
	if more {
		p.NextCursor = p.Items[len(p.Items)-1].cursor.String()
	}
	return p, nil
}

// ReadOnly makes every transaction of the pool read-only, in addition to the
// read-only database role the portal is meant to log in with.
func ReadOnly(cfg *pgxpool.Config) {
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.ConnConfig.RuntimeParams["application_name"] = "promo-portal"
}

// ReadOnlyRoleSQL renders config/portal/readonly-role.sql (psql syntax, with
// the variables role and password) into statements pgx can run, so the
// development stack and the tests apply the very file operators run with psql.
func ReadOnlyRoleSQL(script, role, password string) []string {
	return pgrole.ReadOnlySQL(script, role, password)
}
