package tracker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// StatusChange asks to move recorded conversions to another status (SPEC §3).
type StatusChange struct {
	OfferIDs   []int64 // offers the order may be on; one for a postback
	GoalID     int64   // 0: every goal of those offers (a shop's refund declines the whole order)
	AdvOrderID string
	To         string    // approved | pending | declined
	Source     string    // postback | shopify | woocommerce
	At         time.Time // when the request was received
}

// ChangeOutcome is what ChangeStatus did to one conversion.
type ChangeOutcome uint8

const (
	// ChangeApplied: the status changed, and the change is in history.
	ChangeApplied ChangeOutcome = iota + 1
	// ChangeSame: the conversion already has that status; nothing written.
	ChangeSame
	// ChangeInvalid: SPEC §3 does not allow that transition; nothing written.
	ChangeInvalid
)

func (o ChangeOutcome) String() string {
	switch o {
	case ChangeApplied:
		return "applied"
	case ChangeSame:
		return "same"
	case ChangeInvalid:
		return "invalid"
	}
	return fmt.Sprintf("ChangeOutcome(%d)", uint8(o))
}

// StatusChangeResult is the outcome for one conversion of a StatusChange.
type StatusChangeResult struct {
	ConversionID    uuid.UUID
	OfferID, GoalID int64
	From, To        string
	Outcome         ChangeOutcome
}

// Allowed reports whether SPEC §3 allows a conversion to go from one status
// to another: pending → approved, pending → declined, approved → declined.
// (Migration 2 checks the same on conversion_status_changes.)
func Allowed(from, to string) bool {
	switch from {
	case "pending":
		return to == "approved" || to == "declined"
	case "approved":
		return to == "declined"
	}
	return false
}

// AllowedTransitions names the allowed transitions for messages.
const AllowedTransitions = "pending → approved, pending → declined, approved → declined"

// ErrBadStatusChange is returned by ChangeStatus for a request it cannot
// carry out whatever storage does: an unknown status or source, no offer or
// no adv_order_id. It is a caller's bug, not an outage.
var ErrBadStatusChange = errors.New("bad status change")

var statuses = map[string]bool{"approved": true, "pending": true, "declined": true}

var changeSources = map[string]bool{"postback": true, "shopify": true, "woocommerce": true}

// lockSQL reads, and locks until the transaction ends, the conversions a
// change is about, in id order (two changes of the same orders lock in the
// same order: no deadlock). Under READ COMMITTED a row changed by a
// transaction committed while this one waited for its lock is returned as
// that transaction left it, so the status decided on is the current one.
const lockSQL = `SELECT id, offer_id, goal_id, status, updated_at FROM conversions
WHERE adv_order_id = $1 AND offer_id = ANY($2::int8[]) AND ($3::int8 = 0 OR goal_id = $3)
ORDER BY id FOR UPDATE`

// applySQL changes the locked conversions $1 (from the statuses $2) to $3
// at their times $4 and keeps each change in history.
const applySQL = `WITH changed AS (
	UPDATE conversions c SET status = $3, updated_at = u.at
	FROM unnest($1::uuid[], $2::text[], $4::timestamptz[]) AS u(id, from_status, at)
	WHERE c.id = u.id
	RETURNING c.id, u.from_status, u.at
)
INSERT INTO conversion_status_changes (conversion_id, changed_at, from_status, to_status, source)
SELECT id, at, from_status, $3, $5 FROM changed ORDER BY id`

// ChangeStatus applies c to every conversion with that adv_order_id on those
// offers (and goal). No match: an empty slice. An error means storage is
// unavailable (the caller answers 503 storage_unavailable) — nothing changed
// — or, wrapping ErrBadStatusChange, that c itself is malformed.
//
// The conversions are locked (SELECT … FOR UPDATE) in one transaction with
// their update and history rows, so concurrent changes of one conversion
// are serialised: each sees the status the previous one left, and history
// forms a chain. A change's time is c.At, or the conversion's updated_at
// when that is later (a change replayed from the spool after a newer one,
// or another tracker's clock ahead): history and updated_at never go back.
func (w *Writer) ChangeStatus(ctx context.Context, c StatusChange) ([]StatusChangeResult, error) {
	switch {
	case !statuses[c.To]:
		return nil, fmt.Errorf("%w: status %q", ErrBadStatusChange, c.To)
	case !changeSources[c.Source]:
		return nil, fmt.Errorf("%w: source %q", ErrBadStatusChange, c.Source)
	case len(c.OfferIDs) == 0:
		return nil, fmt.Errorf("%w: no offer", ErrBadStatusChange)
	case c.AdvOrderID == "":
		return nil, fmt.Errorf("%w: no adv_order_id", ErrBadStatusChange)
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	// PostgreSQL found unreachable a moment ago (the group commit's circuit
	// breaker): fail at once rather than wait out a connect or commit
	// timeout — a shop's webhook must be answered within seconds.
	if until := w.openUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return nil, fmt.Errorf("changing the status of order %q to %s: %w", c.AdvOrderID, c.To, errBreakerOpen)
	}
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	start := time.Now()
	var results []StatusChangeResult
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		results = results[:0]
		rows, err := tx.Query(ctx, lockSQL, c.AdvOrderID, c.OfferIDs, c.GoalID)
		if err != nil {
			return err
		}
		var ids []pgtype.UUID
		var froms []string
		var ats []time.Time
		for rows.Next() {
			var r StatusChangeResult
			var id pgtype.UUID
			var updated time.Time
			if err := rows.Scan(&id, &r.OfferID, &r.GoalID, &r.From, &updated); err != nil {
				rows.Close()
				return err
			}
			r.ConversionID, r.To = uuid.UUID(id.Bytes), c.To
			switch {
			case r.From == c.To:
				r.Outcome = ChangeSame
			case Allowed(r.From, c.To):
				r.Outcome = ChangeApplied
				ids, froms = append(ids, id), append(froms, r.From)
				ats = append(ats, latest(c.At, updated))
			default:
				r.Outcome = ChangeInvalid
			}
			results = append(results, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, applySQL, ids, froms, c.To, ats, c.Source)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != int64(len(ids)) {
			return fmt.Errorf("status change of %d locked conversions kept %d in history", len(ids), tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("changing the status of order %q to %s: %w", c.AdvOrderID, c.To, err)
	}
	if w.metrics != nil {
		for _, r := range results {
			w.metrics.StatusChanges.WithLabelValues(r.Outcome.String(), c.Source).Inc()
		}
		w.metrics.StatusChangeSeconds.Observe(time.Since(start).Seconds())
	}
	if results == nil {
		results = []StatusChangeResult{}
	}
	return results, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
