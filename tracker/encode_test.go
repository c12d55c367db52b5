package tracker

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
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

func TestBatchEncoderLayout(t *testing.T) {
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
}

func BenchmarkBatchEncoder(b *testing.B) {
	rows := benchRows(500)
	var e batchEncoder
	b.ReportAllocs()
	for b.Loop() {
		e.encode(rows)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
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
