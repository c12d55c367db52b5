package tracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"promocodes.dev/promo-operator/internal/testutil/pgtest"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

// historyRow is a conversion_status_changes row.
type historyRow struct {
	From, To, Source string
	At               time.Time
}

func history(t *testing.T, db *pgxpool.Pool, id string) []historyRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT from_status, to_status, source, changed_at FROM conversion_status_changes
		WHERE conversion_id = $1 ORDER BY changed_at, id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []historyRow
	for rows.Next() {
		var h historyRow
		if err := rows.Scan(&h.From, &h.To, &h.Source, &h.At); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stored returns a conversion's status, created_at and updated_at.
func stored(t *testing.T, db *pgxpool.Pool, id string) (status string, created, updated time.Time) {
	t.Helper()
	if err := db.QueryRow(context.Background(), `SELECT status, created_at, updated_at FROM conversions WHERE id = $1`, id).
		Scan(&status, &created, &updated); err != nil {
		t.Fatalf("conversion %s: %v", id, err)
	}
	return status, created, updated
}

// migratedWriter is a writer on a fresh, migrated database.
func migratedWriter(t *testing.T) (*Writer, *pgxpool.Pool, *Metrics) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, freshDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	w := NewWriter(pool, 1000, 1000, m)
	w.Run(1)
	t.Cleanup(w.Close)
	return w, pool, m
}

func statusRow(offer, goal int64, order, status string, at time.Time) Row {
	id, _ := uuid.NewV7()
	return Row{ID: id, CreatedAt: at, PromoCode: "PROMO22", PromoCodeRef: "shop/promo22", OfferID: offer, AffiliateID: 42, GoalID: goal,
		Status: status, Amount: "10", Payout: "1", Revenue: "8", Currency: "USD", AdvOrderID: order, Source: "postback"}
}

var allStatuses = []string{"approved", "pending", "declined"}

// Every (from, to): the allowed ones apply (status, updated_at, one history
// row, one transaction), the same status is ChangeSame and the others
// ChangeInvalid, neither writing anything.
func TestChangeStatusTransitions(t *testing.T) {
	w, db, m := migratedWriter(t)
	ctx := context.Background()
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			t.Run(from+"->"+to, func(t *testing.T) {
				order := "tr-" + from + "-" + to
				row := statusRow(7, 1, order, from, created)
				if res := w.Submit(ctx, row); res.Err != nil || res.Duplicate {
					t.Fatalf("submit: %+v", res)
				}
				at := created.Add(time.Hour)
				got, err := w.ChangeStatus(ctx, StatusChange{OfferIDs: []int64{7}, GoalID: 1, AdvOrderID: order, To: to, Source: "postback", At: at})
				if err != nil {
					t.Fatal(err)
				}
				want := ChangeInvalid
				switch {
				case from == to:
					want = ChangeSame
				case Allowed(from, to):
					want = ChangeApplied
				}
				if len(got) != 1 || got[0] != (StatusChangeResult{ConversionID: row.ID, OfferID: 7, GoalID: 1, From: from, To: to, Outcome: want}) {
					t.Fatalf("ChangeStatus: %+v, want one %v", got, want)
				}
				status, c, u := stored(t, db, row.ID.String())
				h := history(t, db, row.ID.String())
				if want == ChangeApplied {
					if status != to || !u.Equal(at) || !c.Equal(created) {
						t.Fatalf("after %s: status %s, created %v, updated %v", want, status, c, u)
					}
					if len(h) != 1 || h[0].From != from || h[0].To != to || h[0].Source != "postback" || !h[0].At.Equal(at) {
						t.Fatalf("history %+v", h)
					}
				} else {
					if status != from || !u.Equal(created) || len(h) != 0 {
						t.Fatalf("after %s: status %s, updated %v (created %v), history %+v; want nothing written", want, status, u, created, h)
					}
				}
			})
		}
	}
	// Exactly the three SPEC §3 transitions are allowed.
	n := 0
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			if Allowed(from, to) {
				n++
			}
		}
	}
	if n != 3 || !Allowed("pending", "approved") || !Allowed("pending", "declined") || !Allowed("approved", "declined") {
		t.Fatalf("%d transitions allowed", n)
	}
	if v := testutil.ToFloat64(m.StatusChanges.WithLabelValues("applied", "postback")); v != 3 {
		t.Fatalf("%v applied changes counted, want 3", v)
	}
}

// A shop's refund (GoalID 0, several offers) declines every conversion of
// the order on those offers, each by its own rule, and nothing on other
// offers or orders. No match is an empty slice; a malformed request is
// ErrBadStatusChange, not an outage.
func TestChangeStatusWholeOrder(t *testing.T) {
	w, db, _ := migratedWriter(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rows := []Row{
		statusRow(7, 1, "shop-1", "approved", at),
		statusRow(7, 2, "shop-1", "pending", at),
		statusRow(8, 1, "shop-1", "declined", at),
		statusRow(9, 1, "shop-1", "approved", at), // another offer
		statusRow(7, 1, "shop-2", "approved", at), // another order
	}
	for _, r := range rows {
		r.Source = "shopify"
		if res := w.Submit(ctx, r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	got, err := w.ChangeStatus(ctx, StatusChange{OfferIDs: []int64{7, 8}, AdvOrderID: "shop-1", To: "declined", Source: "shopify", At: at.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uuid.UUID]StatusChangeResult{}
	for _, r := range got {
		byID[r.ConversionID] = r
	}
	want := map[uuid.UUID]ChangeOutcome{rows[0].ID: ChangeApplied, rows[1].ID: ChangeApplied, rows[2].ID: ChangeSame}
	if len(got) != 3 {
		t.Fatalf("results %+v, want 3", got)
	}
	for id, o := range want {
		if byID[id].Outcome != o {
			t.Errorf("%s: %+v, want %v", id, byID[id], o)
		}
	}
	for i, r := range rows {
		status, _, _ := stored(t, db, r.ID.String())
		wantStatus := r.Status
		if i < 3 {
			wantStatus = "declined"
		}
		if status != wantStatus {
			t.Errorf("row %d: %s, want %s", i, status, wantStatus)
		}
		if h := history(t, db, r.ID.String()); (i < 2) != (len(h) == 1) || (i < 2 && h[0].Source != "shopify") {
			t.Errorf("row %d history %+v", i, h)
		}
	}
	none, err := w.ChangeStatus(ctx, StatusChange{OfferIDs: []int64{7}, AdvOrderID: "no-such-order", To: "declined", Source: "woocommerce"})
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("no match: %#v %v, want an empty slice", none, err)
	}
	for _, bad := range []StatusChange{
		{OfferIDs: []int64{7}, AdvOrderID: "shop-1", To: "refunded", Source: "shopify"},
		{OfferIDs: []int64{7}, AdvOrderID: "shop-1", To: "declined", Source: "img"},
		{AdvOrderID: "shop-1", To: "declined", Source: "shopify"},
		{OfferIDs: []int64{7}, To: "declined", Source: "shopify"},
	} {
		if _, err := w.ChangeStatus(ctx, bad); !errors.Is(err, ErrBadStatusChange) {
			t.Errorf("%+v: %v, want ErrBadStatusChange", bad, err)
		}
	}
}

// ChangeStatus on a PostgreSQL that is not there fails (503 for callers)
// and writes nothing.
func TestChangeStatusStorageDown(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := NewWriter(pool, 1, 1, NewMetrics(prometheus.NewRegistry()))
	got, err := w.ChangeStatus(context.Background(), StatusChange{OfferIDs: []int64{7}, AdvOrderID: "o", To: "declined", Source: "postback"})
	if err == nil || errors.Is(err, ErrBadStatusChange) || got != nil {
		t.Fatalf("storage down: %v %v", got, err)
	}
	// With the group commit's breaker open, it fails without trying.
	w.openUntil.Store(time.Now().Add(time.Hour).UnixNano())
	if _, err := w.ChangeStatus(context.Background(), StatusChange{OfferIDs: []int64{7}, AdvOrderID: "o", To: "declined", Source: "shopify"}); !errors.Is(err, errBreakerOpen) {
		t.Fatalf("breaker open: %v", err)
	}
}

// Through the real handler over HTTP: the replies of SPEC §3 status
// changes, and what they store.
func TestStatusChangeReplies(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	q := "code=PROMO22&offer_id=7&goal_alias=lead&amount=10&adv_order_id=sc-1"
	code, _, r, _ := get(t, e.url, q)
	if code != 200 || r.Status != "pending" || r.ConversionID == "" {
		t.Fatalf("new conversion: %d %+v", code, r)
	}
	id := r.ConversionID
	_, created, _ := stored(t, e.db, id)
	steps := []struct {
		query   string
		code    int
		status  string
		reason  string
		message string // part of it
		stored  string
	}{
		{"", 200, "duplicate", "duplicate", "already recorded", "pending"},                                                          // no conv_status
		{"&conv_status=pending", 200, "duplicate", "duplicate", "already recorded", "pending"},                                      // same
		{"&conv_status=approved", 200, "approved", "status_changed", "", "approved"},                                                // pending → approved
		{"&conv_status=approved", 200, "duplicate", "duplicate", "", "approved"},                                                    // same again
		{"&conv_status=pending", 409, "invalid_transition", "invalid_transition", "cannot change approved → pending", "approved"},   // back
		{"&conv_status=declined", 200, "declined", "status_changed", "", "declined"},                                                // approved → declined
		{"&conv_status=approved", 409, "invalid_transition", "invalid_transition", "cannot change declined → approved", "declined"}, // final
		{"&conv_status=pending", 409, "invalid_transition", "invalid_transition", "declined → pending", "declined"},
		{"&conv_status=declined&return=img", 200, "duplicate", "", "", "declined"}, // pixel
	}
	for i, s := range steps {
		code, hdr, r, _ := get(t, e.url, q+s.query)
		if strings.Contains(s.query, "return=img") {
			if code != 200 || hdr.Get("X-Promo-Status") != s.status || hdr.Get("Content-Type") != "image/gif" {
				t.Fatalf("step %d %s: %d %v", i, s.query, code, hdr)
			}
		} else if code != s.code || r.Status != s.status || r.Reason != s.reason || r.ConversionID != id || !strings.Contains(r.Message, s.message) ||
			hdr.Get("X-Promo-Status") != s.status {
			t.Fatalf("step %d %s: %d %+v (X-Promo-Status %q), want %d %s/%s %q", i, s.query, code, r, hdr.Get("X-Promo-Status"), s.code, s.status, s.reason, s.message)
		}
		if st, _, _ := stored(t, e.db, id); st != s.stored {
			t.Fatalf("step %d: stored %s, want %s", i, st, s.stored)
		}
	}
	h := history(t, e.db, id)
	if len(h) != 2 || h[0].From != "pending" || h[0].To != "approved" || h[1].From != "approved" || h[1].To != "declined" ||
		h[0].Source != "postback" || h[1].Source != "postback" || h[0].At.Before(created) || h[1].At.Before(h[0].At) {
		t.Fatalf("history %+v", h)
	}
	if _, _, updated := stored(t, e.db, id); !updated.Equal(h[1].At) {
		t.Fatalf("updated_at %v, want the last change %v", updated, h[1].At)
	}
	var n int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM conversions WHERE adv_order_id = 'sc-1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d conversions for the order (%v), want 1", n, err)
	}

	// Pixels: always 200, the outcome in X-Promo-Status.
	q2 := "code=PROMO22&offer_id=7&goal_alias=lead&adv_order_id=sc-2&return=img"
	for i, s := range []struct{ conv, header string }{{"", "pending"}, {"&conv_status=declined", "declined"}, {"&conv_status=approved", "invalid_transition"}} {
		code, hdr, _, _ := get(t, e.url, q2+s.conv)
		if code != 200 || hdr.Get("X-Promo-Status") != s.header {
			t.Fatalf("pixel %d: %d X-Promo-Status %q, want %q", i, code, hdr.Get("X-Promo-Status"), s.header)
		}
	}
	var pixelID string
	if err := e.db.QueryRow(context.Background(), `SELECT id::text FROM conversions WHERE adv_order_id = 'sc-2'`).Scan(&pixelID); err != nil {
		t.Fatal(err)
	}
	if h := history(t, e.db, pixelID); len(h) != 1 || h[0].To != "declined" || h[0].Source != "postback" {
		t.Fatalf("pixel history %+v", h)
	}
	// The same order id on another goal is another conversion, not a change.
	if code, _, r, _ := get(t, e.url, "code=PROMO22&offer_id=7&goal_alias=sale&adv_order_id=sc-1&conv_status=approved"); code != 200 || r.Status != "approved" || r.Reason != "" || r.ConversionID == id {
		t.Fatalf("other goal: %d %+v", code, r)
	}
}

// 50 requests race to approve or decline one pending conversion (half
// through HTTP, half through ChangeStatus): no lost update — history is one
// chain from pending, each from the previous to, and the final status is
// its last to; every applied reply has a history row.
func TestConcurrentStatusChanges(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	q := "code=PROMO22&offer_id=7&goal_alias=lead&adv_order_id=race"
	code, _, r, _ := get(t, e.url, q)
	if code != 200 || r.Status != "pending" {
		t.Fatalf("new: %d %+v", code, r)
	}
	id := r.ConversionID
	w := e.srv.writer
	var mu sync.Mutex
	applied := map[string]int{}
	var wg sync.WaitGroup
	for i := range 50 {
		to := "approved"
		if i%2 == 1 {
			to = "declined"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 < 2 {
				code, _, r, _ := get(t, e.url, q+"&conv_status="+to)
				if (code != 200 && code != 409) || (r.ConversionID != id) {
					t.Errorf("HTTP %s: %d %+v", to, code, r)
				}
				if r.Reason == "status_changed" {
					mu.Lock()
					applied[to]++
					mu.Unlock()
				}
				return
			}
			res, err := w.ChangeStatus(context.Background(), StatusChange{OfferIDs: []int64{7}, GoalID: 2, AdvOrderID: "race", To: to, Source: "postback", At: time.Now()})
			if err != nil || len(res) != 1 {
				t.Errorf("ChangeStatus %s: %+v %v", to, res, err)
				return
			}
			if res[0].Outcome == ChangeApplied {
				mu.Lock()
				applied[to]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	h := history(t, e.db, id)
	prev := "pending"
	for i, c := range h {
		if c.From != prev || !Allowed(c.From, c.To) {
			t.Fatalf("history is no chain at %d: %+v", i, h)
		}
		if i > 0 && c.At.Before(h[i-1].At) {
			t.Fatalf("history goes back in time at %d: %+v", i, h)
		}
		prev = c.To
	}
	final, _, updated := stored(t, e.db, id)
	if final != prev || final != "declined" {
		t.Fatalf("final status %s, history ends at %s; want declined (25 declines raced)", final, prev)
	}
	if len(h) < 1 || len(h) > 2 || !updated.Equal(h[len(h)-1].At) {
		t.Fatalf("history %+v, updated_at %v", h, updated)
	}
	if applied["approved"]+applied["declined"] != len(h) {
		t.Fatalf("%v applied replies, %d history rows", applied, len(h))
	}
}

// During an outage, a decline of a recorded conversion is spooled and
// answered like a new conversion; at replay it is found a duplicate and
// applied as a status change (history source postback), not dropped. An
// invalid one is counted and not applied; replaying again changes nothing.
func TestSpoolReplayAppliesStatusChange(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	own, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()
	cfg := DefaultConfig()
	cfg.Listen, cfg.DatabaseURL, cfg.SpoolDir, cfg.DrainDelay = "127.0.0.1:0", own.URL, t.TempDir(), 0
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Routes.Store(testTable())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	base := "http://" + srv.Addr()
	lead := "code=PROMO22&offer_id=7&goal_alias=lead&adv_order_id="
	_, _, a, _ := get(t, base, lead+"sp-a")                      // pending, to be declined
	_, _, b, _ := get(t, base, lead+"sp-b&conv_status=declined") // declined, to be "approved"
	if a.Status != "pending" || b.Status != "declined" {
		t.Fatalf("before: %+v %+v", a, b)
	}
	if err := own.StopServer(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ q, want string }{
		{lead + "sp-a&conv_status=declined", "declined"},
		{lead + "sp-b&conv_status=approved", "approved"},
		{lead + "sp-c&conv_status=pending", "pending"},   // new during the outage
		{lead + "sp-c&conv_status=approved", "approved"}, // and approved during it
		{lead + "sp-a", "pending"},                       // no conv_status: a duplicate at replay, dropped
	} {
		code, _, r, _ := get(t, base, s.q)
		if code != 200 || r.Status != s.want {
			t.Fatalf("during the outage %s: %d %+v, want 200 %s", s.q, code, r, s.want)
		}
	}
	if srv.spool.Rows() != 5 {
		t.Fatalf("%d rows spooled, want 5", srv.spool.Rows())
	}
	if err := own.StartServer(); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(context.Background(), own.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	poll.Until(t, 60*time.Second, func() (bool, string) {
		n := srv.spool.Rows()
		return n == 0, fmt.Sprintf("spool not replayed: %d rows left", n)
	})
	statusOf := func(order string) (string, string) {
		var id, st string
		if err := db.QueryRow(context.Background(), `SELECT id::text, status FROM conversions WHERE adv_order_id = $1`, order).Scan(&id, &st); err != nil {
			t.Fatalf("%s: %v", order, err)
		}
		return id, st
	}
	if id, st := statusOf("sp-a"); st != "declined" || id != a.ConversionID {
		t.Fatalf("sp-a after replay: %s %s, want declined", id, st)
	} else if h := history(t, db, id); len(h) != 1 || h[0].From != "pending" || h[0].To != "declined" || h[0].Source != "postback" {
		t.Fatalf("sp-a history %+v", h)
	}
	if _, st := statusOf("sp-b"); st != "declined" {
		t.Fatalf("sp-b: %s, declined → approved must not apply", st)
	}
	if id, st := statusOf("sp-c"); st != "approved" {
		t.Fatalf("sp-c: %s, want approved", st)
	} else if h := history(t, db, id); len(h) != 1 || h[0].From != "pending" || h[0].To != "approved" {
		t.Fatalf("sp-c history %+v", h)
	}
	m := srv.Metrics.SpooledChanges
	if a, i := testutil.ToFloat64(m.WithLabelValues("applied")), testutil.ToFloat64(m.WithLabelValues("invalid")); a != 2 || i != 1 {
		t.Fatalf("spooled changes: %v applied, %v invalid; want 2, 1", a, i)
	}
}

// Replaying the same spooled rows twice (a crash before the spool file was
// removed) applies each change once.
func TestSpoolReplayOfChangesIsIdempotent(t *testing.T) {
	w, db, m := migratedWriter(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	first := statusRow(7, 2, "idem", "pending", at)
	first.ExplicitStatus = true
	if res := w.Submit(ctx, first); res.Err != nil {
		t.Fatal(res.Err)
	}
	decline := statusRow(7, 2, "idem", "declined", at.Add(time.Minute))
	decline.ExplicitStatus = true
	spooled := []Row{first, decline}
	var logged []string
	log := func(msg string, args ...any) { logged = append(logged, fmt.Sprint(msg, args)) }
	for range 2 {
		if err := w.insertSpooled(spooled, log); err != nil {
			t.Fatal(err)
		}
	}
	if st, _, u := stored(t, db, first.ID.String()); st != "declined" || !u.Equal(decline.CreatedAt) {
		t.Fatalf("after replays: %s, updated %v", st, u)
	}
	if h := history(t, db, first.ID.String()); len(h) != 1 {
		t.Fatalf("history %+v, want one change", h)
	}
	if a, s := testutil.ToFloat64(m.SpooledChanges.WithLabelValues("applied")), testutil.ToFloat64(m.SpooledChanges.WithLabelValues("same")); a != 1 || s != 1 {
		t.Fatalf("spooled changes: %v applied, %v same", a, s)
	}
	if len(logged) != 0 {
		t.Fatalf("logged %v", logged)
	}
}
