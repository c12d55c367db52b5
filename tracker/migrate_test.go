package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// oldInsert is how a tracker of migration 1 inserts: without updated_at.
const oldInsert = `INSERT INTO conversions (id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id,
	status, amount, payout, revenue, currency, adv_order_id, source)
	VALUES (gen_random_uuid(), $1, 'PROMO22', 'shop/promo22', 7, 42, 1, $2, '10.00', '1.00', '8.00', 'USD', $3, $4)`

// A database at migration 1 with rows, migrated to the latest: rows keep
// their data and get updated_at = created_at; a tracker of the previous
// version can still insert (rolling upgrade); the new constraints hold;
// trackers migrating at once apply each migration once.
func TestMigrationUpgradeWithRows(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, freshDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if ok, err := Migrated(ctx, pool); err != nil || ok {
		t.Fatalf("Migrated on an empty database: %v %v, want false", ok, err)
	}
	if applied, err := migrateTo(ctx, pool, 1); err != nil || len(applied) != 1 || applied[0] != 1 {
		t.Fatalf("migrating to 1: %v %v", applied, err)
	}
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	for i, st := range []string{"approved", "pending", "declined"} {
		if _, err := pool.Exec(ctx, oldInsert, base.Add(time.Duration(i)*time.Minute), st, "order-"+st, "img"); err != nil {
			t.Fatal(err)
		}
	}
	type snap struct {
		ID, Status, Amount, Source string
		Created                    time.Time
	}
	read := func() []snap {
		rows, err := pool.Query(ctx, `SELECT id::text, status, amount::text, source, created_at FROM conversions ORDER BY created_at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []snap
		for rows.Next() {
			var s snap
			if err := rows.Scan(&s.ID, &s.Status, &s.Amount, &s.Source, &s.Created); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	before := read()
	if ok, err := Migrated(ctx, pool); err != nil || ok {
		t.Fatalf("Migrated at version 1: %v %v, want false", ok, err)
	}

	// Four trackers start at once.
	var wg sync.WaitGroup
	results := make([][]int, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	applied := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("tracker %d: %v", i, errs[i])
		}
		for _, v := range results[i] {
			if v != 2 {
				t.Errorf("tracker %d applied %d again", i, v)
			}
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("migration 2 applied %d times, want once: %v", applied, results)
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&versions); err != nil || versions != 2 {
		t.Fatalf("schema_migrations has %d versions (%v), want 2", versions, err)
	}
	if ok, err := Migrated(ctx, pool); err != nil || !ok {
		t.Fatalf("Migrated after migrating: %v %v", ok, err)
	}
	if again, err := Migrate(ctx, pool); err != nil || len(again) != 0 {
		t.Fatalf("migrating again: %v %v, want nothing applied", again, err)
	}

	after := read()
	if len(after) != len(before) {
		t.Fatalf("%d rows after the upgrade, %d before", len(after), len(before))
	}
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("row changed by the upgrade: %+v -> %+v", before[i], after[i])
		}
	}
	var mismatched int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM conversions WHERE updated_at IS DISTINCT FROM created_at`).Scan(&mismatched); err != nil || mismatched != 0 {
		t.Fatalf("%d backfilled rows with updated_at != created_at (%v)", mismatched, err)
	}

	// A tracker of the previous version, still running: its insert works.
	old := base.Add(time.Hour)
	if _, err := pool.Exec(ctx, oldInsert, old, "pending", "order-old", "postback"); err != nil {
		t.Fatalf("insert of a previous-version tracker after the upgrade: %v", err)
	}
	var updated time.Time
	if err := pool.QueryRow(ctx, `SELECT updated_at FROM conversions WHERE adv_order_id = 'order-old'`).Scan(&updated); err != nil || !updated.Equal(old) {
		t.Fatalf("updated_at of an old tracker's row = %v (%v), want created_at %v", updated, err, old)
	}

	// The previous tracker's group commit: a binary COPY without updated_at.
	w := NewWriter(pool, 1, 1000, NewMetrics(prometheus.NewRegistry()))
	rows := benchRows(3)
	for i := range rows {
		rows[i].AdvOrderID = fmt.Sprintf("old-copy-%d", i)
		rows[i].CreatedAt = old.Add(time.Duration(i) * time.Second)
	}
	var enc copyEncoder
	data, err := enc.encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.copyOld(ctx, data); err != nil {
		t.Fatalf("COPY of a previous-version tracker after the upgrade: %v", err)
	}
	for _, r := range rows {
		var created, updated time.Time
		if err := pool.QueryRow(ctx, `SELECT created_at, updated_at FROM conversions WHERE id = $1`, r.ID).Scan(&created, &updated); err != nil || !updated.Equal(created) || !created.Equal(r.CreatedAt.Truncate(time.Microsecond)) {
			t.Fatalf("old COPY row: created %v updated %v (%v), want both %v", created, updated, err, r.CreatedAt)
		}
	}

	// New sources; the constraints hold.
	if _, err := pool.Exec(ctx, oldInsert, old, "pending", "order-shop", "shopify"); err != nil {
		t.Fatalf("source shopify: %v", err)
	}
	if _, err := pool.Exec(ctx, oldInsert, old, "pending", "order-woo", "woocommerce"); err != nil {
		t.Fatalf("source woocommerce: %v", err)
	}
	checkViolation := func(what string, err error) {
		t.Helper()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Errorf("%s: %v, want a check violation", what, err)
		}
	}
	_, err = pool.Exec(ctx, oldInsert, old, "pending", "order-bad", "fax")
	checkViolation("source fax", err)
	var id string
	if err := pool.QueryRow(ctx, `SELECT id::text FROM conversions WHERE adv_order_id = 'order-pending'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	history := `INSERT INTO conversion_status_changes (conversion_id, changed_at, from_status, to_status, source) VALUES ($1, now(), $2, $3, $4)`
	_, err = pool.Exec(ctx, history, id, "declined", "approved", "postback")
	checkViolation("history declined -> approved", err)
	_, err = pool.Exec(ctx, history, id, "pending", "pending", "postback")
	checkViolation("history pending -> pending", err)
	_, err = pool.Exec(ctx, history, id, "pending", "approved", "img")
	checkViolation("history source img", err)
	if _, err := pool.Exec(ctx, history, id, "pending", "approved", "woocommerce"); err != nil {
		t.Fatalf("a valid history row: %v", err)
	}
	_, err = pool.Exec(ctx, history, "0190a0a0-0000-7000-8000-000000000000", "pending", "approved", "postback")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		t.Errorf("history of an unknown conversion: %v, want a foreign key violation", err)
	}
	_, err = pool.Exec(ctx, `UPDATE conversions SET updated_at = NULL WHERE id = $1`, id)
	if !errors.As(err, &pgErr) || pgErr.Code != "23502" {
		t.Errorf("updated_at set to NULL: %v, want a not-null violation", err)
	}
}
