package portal

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// StatusChange is one row of conversion_status_changes (SPEC §3, §4): an
// advertiser's later postback or a shop's webhook changing the status.
type StatusChange struct {
	ChangedAt  time.Time `json:"changed_at"`
	FromStatus string    `json:"from_status"`
	ToStatus   string    `json:"to_status"`
	Source     string    `json:"source"` // postback, shopify or woocommerce
}

// TransactionDetail is one conversion with its status history, oldest
// change first: GET /api/v1/transactions/{id} and the page
// /transactions/{id}.
type TransactionDetail struct {
	Transaction
	History []StatusChange `json:"history"`
}

// InitialStatus is the status the conversion was recorded with.
func (d *TransactionDetail) InitialStatus() string {
	if len(d.History) > 0 {
		return d.History[0].FromStatus
	}
	return d.Status
}

// ErrNotFound: no conversion has that id.
var ErrNotFound = errors.New("no such conversion")

// Transaction reads one conversion and its history in one read-only
// REPEATABLE READ transaction, so the history always ends at the status
// shown (a change committing between the two reads cannot split them).
// Served by the primary key and conversion_status_changes_conversion.
func (s *Store) Transaction(ctx context.Context, id uuid.UUID) (*TransactionDetail, error) {
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	d := &TransactionDetail{History: []StatusChange{}}
	if err := d.scan(tx.QueryRow(ctx, "SELECT "+txColumns+"\n  FROM conversions WHERE id = $1", id)); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT changed_at, coalesce(from_status, ''), coalesce(to_status, ''), coalesce(source, '')
  FROM conversion_status_changes
 WHERE conversion_id = $1
 ORDER BY changed_at, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c StatusChange
		if err := rows.Scan(&c.ChangedAt, &c.FromStatus, &c.ToStatus, &c.Source); err != nil {
			return nil, err
		}
		d.History = append(d.History, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return d, nil
}
