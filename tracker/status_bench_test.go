package tracker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

func benchPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	ctx := context.Background()
	u, drop, err := pg.FreshDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(drop)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	return pool
}

// BenchmarkGroupCommitTrigger is the group commit's COPY of 1000-row
// batches with migration 2's rolling-upgrade trigger and without it (a BEFORE
// ROW trigger makes COPY insert row by row even when its WHEN clause skips
// the function) — the evidence for keeping it (docs/benchmarks.md).
func BenchmarkGroupCommitTrigger(b *testing.B) {
	for _, variant := range []string{"without-trigger", "old-tracker-rows", "with-trigger"} {
		b.Run(variant, func(b *testing.B) {
			pool := benchPool(b)
			ctx := context.Background()
			if variant == "without-trigger" {
				if _, err := pool.Exec(ctx, "DROP TRIGGER conversions_default_updated_at ON conversions"); err != nil {
					b.Fatal(err)
				}
			}
			w := NewWriter(pool, 1, 1000, NewMetrics(prometheus.NewRegistry()))
			var enc encoders
			rows := benchRows(1000)
			n := 0
			for b.Loop() {
				for i := range rows {
					rows[i].ID, _ = uuid.NewV7()
					rows[i].AdvOrderID = "o-" + strconv.Itoa(n)
					n++
				}
				if variant == "old-tracker-rows" {
					// What a tracker of the previous version sends: no updated_at.
					data, err := enc.copy.encode(rows)
					if err != nil {
						b.Fatal(err)
					}
					if err := w.copyOld(ctx, data); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if got, err := w.insert(ctx, &enc, rows); err != nil || got != nil {
					b.Fatal(got, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/row")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkChangeStatus is the status change path: one transaction (lock,
// update, history row, commit) per change, serial and with 8 at once.
func BenchmarkChangeStatus(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("concurrent-%d", par), func(b *testing.B) {
			pool := benchPool(b)
			ctx := context.Background()
			w := NewWriter(pool, 1, 1000, NewMetrics(prometheus.NewRegistry()))
			// Enough pending conversions for any b.N.
			const n = 200_000
			if _, err := pool.Exec(ctx, `INSERT INTO conversions (id, created_at, updated_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id,
				status, amount, payout, revenue, currency, adv_order_id, source)
				SELECT gen_random_uuid(), now(), now(), 'PROMO22', 'shop/p', 7, 42, 1, 'pending', 10, 1, 8, 'USD', 'o-' || i, 'postback'
				FROM generate_series(0, $1 - 1) i`, n); err != nil {
				b.Fatal(err)
			}
			if _, err := pool.Exec(ctx, "ANALYZE conversions"); err != nil {
				b.Fatal(err)
			}
			next := make(chan int, n)
			for i := range n {
				next <- i
			}
			b.SetParallelism(par) // × GOMAXPROCS goroutines
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := <-next
					res, err := w.ChangeStatus(ctx, StatusChange{OfferIDs: []int64{7}, GoalID: 1, AdvOrderID: "o-" + strconv.Itoa(i), To: "approved", Source: "postback"})
					if err != nil || len(res) != 1 || res[0].Outcome != ChangeApplied {
						b.Fatal(res, err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "changes/s")
		})
	}
}

// copyOld COPYs data, a stream of copyEncoder, as a tracker of the previous
// version did: without the last field, updated_at.
func (w *Writer) copyOld(ctx context.Context, data []byte) error {
	be := binary.BigEndian
	out := append([]byte(nil), data[:len(copySignature)]...)
	p := len(copySignature)
	for {
		fields := int(int16(be.Uint16(data[p:])))
		if fields < 0 {
			out = append(out, data[p:]...)
			break
		}
		out = be.AppendUint16(out, uint16(fields-1))
		p += 2
		for f := range fields {
			start := p
			if n := int32(be.Uint32(data[p:])); n > 0 {
				p += 4 + int(n)
			} else {
				p += 4
			}
			if f < fields-1 {
				out = append(out, data[start:p]...)
			}
		}
	}
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	_, err = conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(out), strings.Replace(copySQL, ", updated_at)", ")", 1))
	return err
}
