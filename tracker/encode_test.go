package tracker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func benchRows(n int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{ID: uuid.New(), CreatedAt: time.Now(), PromoCode: "PROMO22", PromoCodeRef: "shop/promo22", OfferID: 7,
			AffiliateID: 42, GoalID: 1, Status: "approved", Amount: "19.99", Payout: "1.999", Revenue: "8.00", Currency: "USD",
			AdvOrderID: "order-1", AdvParams: [5]string{"a"}, Source: "img", IP: "127.0.0.1", UserAgent: "bench"}
	}
	return rows
}

func TestEncodersLayoutAndReuse(t *testing.T) {
	rows := benchRows(2)
	rows[1].AdvOrderID = ""
	var e batchEncoder
	params := e.encode(rows)
	if len(params) != nParams {
		t.Fatalf("%d params, want %d", len(params), nParams)
	}
	be := binary.BigEndian
	// created_at: one dimension, no NULLs, timestamptz elements, 2 long, microseconds since 2000.
	ts := params[1]
	if be.Uint32(ts[0:]) != 1 || be.Uint32(ts[4:]) != 0 || be.Uint32(ts[8:]) != oidTimestamptz || be.Uint32(ts[12:]) != 2 || be.Uint32(ts[16:]) != 1 {
		t.Fatalf("timestamptz header % x", ts[:20])
	}
	if got := int64(be.Uint64(ts[24:])); got != rows[0].CreatedAt.UnixMicro()-postgresEpoch {
		t.Fatalf("timestamptz %d", got)
	}
	// adv_order_id ($13): the second is NULL and the header says so.
	order := params[12]
	if be.Uint32(order[4:]) != 1 || be.Uint32(order[8:]) != oidText {
		t.Fatalf("order header % x", order[:20])
	}
	if n := be.Uint32(order[20:]); n != 7 || string(order[24:31]) != "order-1" || be.Uint32(order[31:]) != 0xFFFFFFFF {
		t.Fatalf("order elements % x", order[20:])
	}
	// A second batch reuses the buffers and allocates nothing.
	big := benchRows(500)
	e.encode(big)
	if allocs := testing.AllocsPerRun(10, func() { e.encode(big) }); allocs != 0 {
		t.Fatalf("encode allocates %.0f times per batch", allocs)
	}
	var stream copyEncoder
	if _, err := stream.encode(big); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(10, func() { _, _ = stream.encode(big) }); allocs != 0 {
		t.Fatalf("the COPY encoder allocates %.0f times per batch", allocs)
	}
}

// BenchmarkEncoders times both batch encodings: the COPY stream of the
// group commit and the arrays of the INSERT that redoes a batch.
func BenchmarkEncoders(b *testing.B) {
	rows := benchRows(500)
	var arrays batchEncoder
	var stream copyEncoder
	for name, encode := range map[string]func() error{
		"copy":   func() error { _, err := stream.encode(rows); return err },
		"arrays": func() error { arrays.encode(rows); return nil },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := encode(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
		})
	}
}

// BenchmarkHandler is the request path without the network and without
// PostgreSQL: a goroutine stands in for the writer and acknowledges at once.
func BenchmarkHandler(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	routes := NewRoutes(m)
	routes.Store(testTable())
	w := NewWriter(nil, 1024, 1000, m)
	go func() {
		for p := range w.queue {
			p.done <- Result{}
		}
	}()
	defer close(w.queue)
	h := &Handler{Routes: routes, Writer: w, Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, q := range []string{"code=PROMO22&amount=19.99&adv_order_id=o-1", "code=PROMO22&amount=19.99&adv_order_id=o-1&return=img"} {
		b.Run(q[strings.LastIndexByte(q, '&')+1:], func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/track/promo?"+q, nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// TestCopyStoresWhatInsertStores stores the same rows through the COPY fast
// path and through insertSQL, each into its own database, and compares every
// column as PostgreSQL renders it: the hand-written binary numeric and inet
// encodings must mean what PostgreSQL's own casts of the text make of it.
func TestCopyStoresWhatInsertStores(t *testing.T) {
	ctx := context.Background()
	pools := [2]*pgxpool.Pool{}
	for i := range pools {
		pool, err := pgxpool.New(ctx, freshDB(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if _, err := Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
		pools[i] = pool
	}
	decimals := []string{"0", "0.00", "-0", "-0.000", "1", "19.99", "1.999", "8.00", "100", "10000", "10000.0001", "0.0001",
		"0.00001", "0.5", "-0.5", "-12.340", "99999999.99999999", "123456789012.12345678", "1000000000000", "0.000000012300"}
	for range 300 {
		d := strconv.FormatInt(rand.Int64N(1_000_000_000_000), 10)
		if f := rand.IntN(9); f > 0 {
			d += "." + fmt.Sprintf("%0*d", f, rand.Int64N(int64(math.Pow10(f))))
		}
		if rand.IntN(3) == 0 {
			d = "-" + d
		}
		decimals = append(decimals, d)
	}
	ips := []string{"", "127.0.0.1", "10.1.2.3", "::1", "2001:db8::8a2e:370:7334", "fe80::1", "::"}
	rows := make([]Row, len(decimals))
	for i, d := range decimals {
		id, _ := uuid.NewV7()
		rows[i] = Row{ID: id, CreatedAt: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC).Add(time.Duration(i) * 37 * time.Hour),
			PromoCode: "PROMO" + strconv.Itoa(i), PromoCodeRef: "shop/promo", OfferID: int64(i), AffiliateID: -int64(i), GoalID: 1 << 40,
			Status: "approved", Amount: strings.TrimPrefix(d, "-"), Payout: d, Revenue: decimals[len(decimals)-1-i], Currency: "EUR",
			AdvParams: [5]string{"", "ünïcödé ☃", "", "tab\tand\nnewline\\", ""}, Source: "postback", IP: ips[i%len(ips)], UserAgent: "Mozilla/5.0 ☃"}
		if i%3 != 0 {
			rows[i].AdvOrderID = "order-" + strconv.Itoa(i)
		}
	}
	m := NewMetrics(prometheus.NewRegistry())
	var viaCopy encoders
	if got, err := NewWriter(pools[0], 1, 1000, m).insert(ctx, &viaCopy, rows); err != nil || got != nil {
		t.Fatalf("COPY: %v, inserted %v", err, got)
	}
	viaInsert := encoders{insertUntil: time.Now().Add(time.Hour)}
	if got, err := NewWriter(pools[1], 1, 1000, NewMetrics(prometheus.NewRegistry())).insert(ctx, &viaInsert, rows); err != nil || got != nil {
		t.Fatalf("INSERT: %v, inserted %v", err, got)
	}
	rendered := func(pool *pgxpool.Pool) []string {
		r, err := pool.Query(ctx, "select c::text from conversions c order by id")
		if err != nil {
			t.Fatal(err)
		}
		all, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	a, b := rendered(pools[0]), rendered(pools[1])
	if len(a) != len(rows) || len(b) != len(rows) {
		t.Fatalf("%d rows by COPY, %d by INSERT, want %d", len(a), len(b), len(rows))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("row %d differs:\nCOPY   %s\nINSERT %s", i, a[i], b[i])
		}
	}
	if n := testutil.ToFloat64(m.RedoneBatches); n != 0 {
		t.Fatalf("%v batches redone, want 0", n)
	}

	// A batch with a taken order key: the COPY fails as a whole, the batch is
	// redone with insertSQL, and the next second's batches skip the COPY.
	fresh := benchRows(2)
	fresh[0].AdvOrderID, fresh[1].AdvOrderID = "order-1", "order-new"
	fresh[0].OfferID, fresh[0].GoalID = rows[1].OfferID, rows[1].GoalID
	got, err := NewWriter(pools[0], 1, 1000, m).insert(ctx, &viaCopy, fresh)
	if err != nil || len(got) != 1 || !got[fresh[1].ID] {
		t.Fatalf("batch with a taken key: %v, inserted %v; want only %s", err, got, fresh[1].ID)
	}
	if n := testutil.ToFloat64(m.RedoneBatches); n != 1 || !viaCopy.insertUntil.After(time.Now()) {
		t.Fatalf("%v batches redone, insert until %v", n, viaCopy.insertUntil)
	}

	// What the COPY encoder cannot write goes through insertSQL's casts.
	odd := benchRows(1)
	odd[0].Amount = "1e3"
	if _, err := viaCopy.copy.encode(odd); err == nil {
		t.Fatal("the COPY encoder took amount 1e3")
	}
	var later encoders
	if got, err := NewWriter(pools[0], 1, 1000, m).insert(ctx, &later, odd); err != nil || got != nil {
		t.Fatalf("amount 1e3: %v, inserted %v", err, got)
	}
	var amount string
	if err := pools[0].QueryRow(ctx, "select amount::text from conversions where id = $1", odd[0].ID).Scan(&amount); err != nil || amount != "1000" {
		t.Fatalf("amount 1e3 stored as %q (%v)", amount, err)
	}
}
