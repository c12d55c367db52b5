package tracker

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/pgtest"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	if pg, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

var created = time.Now().Add(-time.Hour)

func testOffer(name string, id int64, enabled bool, at time.Time) *trackingv1alpha1.Offer {
	return fixtures.Created(fixtures.WithLeadGoal(fixtures.Offer("shop", name, id, enabled)), at)
}

func testCode(name, code, offer string, affiliate int64, at time.Time) *trackingv1alpha1.PromoCode {
	return fixtures.Created(fixtures.PromoCode("shop", name, code, offer, affiliate), at)
}

// testTable: PROMO22 of affiliate 42 on summer (created first, id 7) and on
// winter (id 8); a future code; a code on a disabled offer; a token offer.
func testTable() *routing.Table {
	vip := testOffer("vip", 9, true, created)
	vip.Spec.Tracking.TokenSecretRef = &trackingv1alpha1.SecretKeyRef{Name: "vip", Key: "token"}
	vip.Spec.Currency = "EUR"
	future := testCode("future", "FUTURE1", "summer", 42, created)
	future.Spec.StartDate = &metav1.Time{Time: time.Now().Add(24 * time.Hour)}
	hash := sha256.Sum256([]byte("s3cret"))
	return routing.NewTable(routing.Compile("test-1",
		kube.Offers([]*trackingv1alpha1.Offer{testOffer("summer", 7, true, created), testOffer("winter", 8, true, created), testOffer("off", 10, false, created), vip}),
		kube.Claims([]*trackingv1alpha1.PromoCode{
			testCode("promo22-summer", "PROMO22", "summer", 42, created),
			testCode("promo22-winter", "promo22", "winter", 42, created.Add(time.Minute)),
			future,
			testCode("offcode", "OFF1", "off", 42, created),
			testCode("vip10", "VIP10", "vip", 7, created),
		}),
		map[routing.Ref][]byte{{Namespace: "shop", Name: "vip"}: hash[:]}))
}

type env struct {
	srv    *Server
	url    string
	db     *pgxpool.Pool
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, dbURL string, table *routing.Table) *env {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen, cfg.DatabaseURL, cfg.DrainDelay = "127.0.0.1:0", dbURL, 0
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if table != nil {
		srv.Routes.Store(table)
	}
	e := &env{srv: srv, url: "http://" + srv.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- srv.Run(ctx, nil) }()
	if e.db, err = pgxpool.New(context.Background(), dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.stop(t); e.db.Close() })
	return e
}

func (e *env) stop(t *testing.T) {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	if err := <-e.done; err != nil {
		t.Error(err)
	}
}

func freshDB(t *testing.T) string {
	t.Helper()
	u, drop, err := pg.FreshDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return u
}

type replyBody struct {
	Status       string `json:"status"`
	ConversionID string `json:"conversion_id"`
	Reason       string `json:"reason"`
	Message      string `json:"message"`
}

func get(t *testing.T, base, query string) (int, http.Header, replyBody, []byte) {
	t.Helper()
	resp, err := http.Get(base + "/track/promo?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r replyBody
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("reply %q: %v", b, err)
		}
	}
	return resp.StatusCode, resp.Header, r, b
}

func TestReplies(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	for _, tc := range []struct {
		name   string
		query  string
		code   int
		status string
	}{
		{"approved by the default goal", "code=PROMO22&amount=10", 200, "approved"},
		{"goal status pending", "code=PROMO22&goal_alias=lead", 200, "pending"},
		{"conv_status overrides", "code=PROMO22&conv_status=declined", 200, "declined"},
		{"missing code", "amount=10", 400, "bad_request"},
		{"malformed code", "code=PROMO-22", 400, "bad_request"},
		{"code too long", "code=" + strings.Repeat("A", 65), 400, "bad_request"},
		{"negative amount", "code=PROMO22&amount=-1", 400, "bad_request"},
		{"float amount", "code=PROMO22&amount=1e3", 400, "bad_request"},
		{"bad offer_id", "code=PROMO22&offer_id=x", 400, "bad_request"},
		{"bad currency", "code=PROMO22&currency=US", 400, "bad_request"},
		{"bad conv_status", "code=PROMO22&conv_status=maybe", 400, "bad_request"},
		{"long adv_order_id", "code=PROMO22&adv_order_id=" + strings.Repeat("x", 129), 400, "bad_request"},
		{"long adv_param", "code=PROMO22&adv_param3=" + strings.Repeat("x", 257), 400, "bad_request"},
		{"invalid utf-8", "code=PROMO22&adv_param1=%ff%fe", 400, "bad_request"},
		{"nul byte", "code=PROMO22&adv_param1=a%00b", 400, "bad_request"},
		{"bad return", "code=PROMO22&return=gif", 400, "bad_request"},
		{"unknown code", "code=NOPE", 404, "unknown_code"},
		{"code not on offer", "code=PROMO22&offer_id=99", 404, "code_not_on_offer"},
		{"code scheduled", "code=FUTURE1", 404, "code_not_active"},
		{"offer disabled", "code=OFF1", 404, "code_not_active"},
		{"unknown goal", "code=PROMO22&goal_id=5", 404, "unknown_goal"},
		{"token missing", "code=VIP10", 403, "invalid_token"},
		{"token wrong", "code=VIP10&token=nope", 403, "invalid_token"},
		{"token right", "code=VIP10&token=s3cret", 200, "approved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, r, _ := get(t, e.url, tc.query)
			if code != tc.code || r.Status != tc.status {
				t.Fatalf("got %d %+v, want %d %s", code, r, tc.code, tc.status)
			}
			if h.Get("X-Promo-Status") != tc.status {
				t.Fatalf("X-Promo-Status %q", h.Get("X-Promo-Status"))
			}
			if code == 200 && r.ConversionID == "" {
				t.Fatal("no conversion_id")
			}
			if code >= 400 && r.Reason == "" {
				t.Fatal("an error reply must say why")
			}
		})
	}
}

func TestRowsAndAttribution(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	type row struct {
		code, ref, status, currency, source, order, p1, ip string
		offer, affiliate, goal                             int64
		amount, payout, revenue                            string
	}
	read := func(id string) row {
		var r row
		if err := e.db.QueryRow(context.Background(), `select promo_code, promo_code_ref, status, currency, source,
			coalesce(adv_order_id, ''), coalesce(adv_param1, ''), host(ip), offer_id, affiliate_id, goal_id, amount::text, payout::text, revenue::text
			from conversions where id = $1`, id).Scan(&r.code, &r.ref, &r.status, &r.currency, &r.source, &r.order, &r.p1, &r.ip,
			&r.offer, &r.affiliate, &r.goal, &r.amount, &r.payout, &r.revenue); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Without offer_id: the offer the code was created on first; 10% of 19.99 is exactly 1.999.
	_, _, r, _ := get(t, e.url, "code=promo22&amount=19.99&adv_order_id=o-1&adv_param1="+url.QueryEscape("x'); drop table conversions;--"))
	got := read(r.ConversionID)
	want := row{code: "PROMO22", ref: "shop/promo22-summer", status: "approved", currency: "USD", source: "postback", order: "o-1",
		p1: "x'); drop table conversions;--", ip: "127.0.0.1", offer: 7, affiliate: 42, goal: 1, amount: "19.99", payout: "1.999", revenue: "8.00"}
	if got != want {
		t.Fatalf("row\n got %+v\nwant %+v", got, want)
	}
	// offer_id picks the reuse; fixed payout; currency given.
	_, _, r, _ = get(t, e.url, "code=PROMO22&offer_id=8&goal_alias=lead&amount=100&currency=eur")
	if got := read(r.ConversionID); got.offer != 8 || got.ref != "shop/promo22-winter" || got.goal != 2 || got.payout != "1.50" ||
		got.status != "pending" || got.currency != "EUR" {
		t.Fatalf("reuse row %+v", got)
	}
	// The offer's currency is the default; no amount stores 0 and a percent payout of 0.
	_, _, r, _ = get(t, e.url, "code=VIP10&token=s3cret")
	if got := read(r.ConversionID); got.currency != "EUR" || got.amount != "0" || got.payout != "0" {
		t.Fatalf("vip row %+v", got)
	}
	// Form POST works like GET.
	resp, err := http.PostForm(e.url+"/track/promo", url.Values{"code": {"PROMO22"}, "amount": {"5"}, "adv_order_id": {"post-1"}})
	if err != nil {
		t.Fatal(err)
	}
	var pr replyBody
	_ = json.NewDecoder(resp.Body).Decode(&pr)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || read(pr.ConversionID).order != "post-1" {
		t.Fatalf("POST: %d %+v", resp.StatusCode, pr)
	}
}

func TestPixels(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	for _, tc := range []struct {
		ret, contentType, status string
		query                    string
	}{
		{"img", "image/gif", "approved", "code=PROMO22"},
		{"js", "application/javascript", "approved", "code=PROMO22"},
		{"iframe", "text/html; charset=utf-8", "approved", "code=PROMO22"},
		{"img", "image/gif", "unknown_code", "code=NOPE"},
		{"img", "image/gif", "bad_request", "code=BAD-1"},
		{"js", "application/javascript", "invalid_token", "code=VIP10"},
	} {
		code, h, _, body := get(t, e.url, tc.query+"&return="+tc.ret)
		if code != 200 || h.Get("Content-Type") != tc.contentType || h.Get("Cache-Control") != "no-store" || h.Get("X-Promo-Status") != tc.status {
			t.Errorf("%s %s: %d %v", tc.ret, tc.query, code, h)
		}
		if tc.ret == "img" && !strings.HasPrefix(string(body), "GIF89a") {
			t.Errorf("not a GIF: %q", body)
		}
		if h.Get("Location") != "" {
			t.Error("pixels never redirect")
		}
	}
	var sources []string
	rows, err := e.db.Query(context.Background(), "select source from conversions order by source")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		sources = append(sources, s)
	}
	rows.Close()
	if strings.Join(sources, ",") != "iframe,img,js" {
		t.Fatalf("sources %v", sources)
	}
}

func TestMethodsAndLimits(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodOptions, http.MethodPatch} {
		req, _ := http.NewRequest(m, e.url+"/track/promo?code=PROMO22", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
			t.Errorf("%s: %d allow=%q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if code, _, _, _ := get(t, e.url, "code=PROMO22&adv_param1="+strings.Repeat("x", 9000)); code != http.StatusRequestURITooLong {
		t.Errorf("long query: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, e.url+"/track/promo?code=PROMO22", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("big header: %d", resp.StatusCode)
	}
	var n int
	_ = e.db.QueryRow(context.Background(), "select count(*) from conversions").Scan(&n)
	if n != 0 {
		t.Fatalf("refused requests stored %d rows", n)
	}
}

func TestDuplicatesUnderConcurrency(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	ids := map[string]bool{}
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, r, _ := get(t, e.url, "code=PROMO22&amount=10&adv_order_id=same-order")
			mu.Lock()
			statuses[r.Status]++
			ids[r.ConversionID] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	var n int
	_ = e.db.QueryRow(context.Background(), "select count(*) from conversions where adv_order_id = 'same-order'").Scan(&n)
	if n != 1 || statuses["approved"] != 1 || statuses["duplicate"] != 99 {
		t.Fatalf("rows %d, replies %v", n, statuses)
	}
	if len(ids) != 1 {
		t.Fatalf("duplicates should name the stored conversion: %d distinct ids", len(ids))
	}
	// The same order id on another goal is another conversion.
	if _, _, r, _ := get(t, e.url, "code=PROMO22&goal_id=2&adv_order_id=same-order"); r.Status != "pending" {
		t.Fatalf("other goal: %+v", r)
	}
	// New orders committed in the same batches as duplicates are stored and
	// answered approved, each with its own id; the duplicates name the first.
	_, _, first, _ := get(t, e.url, "code=PROMO22&adv_order_id=mixed-0")
	replies := make([]replyBody, 100)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := "mixed-0"
			if i%2 == 1 {
				order = fmt.Sprintf("mixed-%d", i)
			}
			_, _, replies[i], _ = get(t, e.url, "code=PROMO22&adv_order_id="+order)
		}()
	}
	wg.Wait()
	for i, r := range replies {
		switch {
		case i%2 == 0 && (r.Status != "duplicate" || r.ConversionID != first.ConversionID):
			t.Fatalf("request %d repeats mixed-0: %+v, want duplicate of %s", i, r, first.ConversionID)
		case i%2 == 1 && (r.Status != "approved" || r.ConversionID == first.ConversionID):
			t.Fatalf("request %d is a new order: %+v", i, r)
		}
	}
	_ = e.db.QueryRow(context.Background(), "select count(*) from conversions where adv_order_id like 'mixed-%'").Scan(&n)
	if n != 51 {
		t.Fatalf("%d mixed rows, want 51", n)
	}
}

func TestAbsentValuesAreNull(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	// Without adv_order_id there is no order key: two equal requests are two
	// conversions, and the absent values are NULL, not empty text.
	before := time.Now().Truncate(time.Microsecond)
	for range 2 {
		if _, _, r, _ := get(t, e.url, "code=PROMO22"); r.Status != "approved" {
			t.Fatalf("reply %+v", r)
		}
	}
	var rows, nulls int
	if err := e.db.QueryRow(context.Background(), `select count(*), count(*) filter (where adv_order_id is null
		and adv_param1 is null and adv_param5 is null) from conversions`).Scan(&rows, &nulls); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || nulls != 2 {
		t.Fatalf("%d rows, %d with NULL order and params; want 2 and 2", rows, nulls)
	}
	// created_at is the instant of receipt, to the microsecond.
	var first, last time.Time
	if err := e.db.QueryRow(context.Background(), "select min(created_at), max(created_at) from conversions").Scan(&first, &last); err != nil {
		t.Fatal(err)
	}
	if after := time.Now(); first.Before(before) || last.After(after) {
		t.Fatalf("created_at %v..%v outside the requests' %v..%v", first, last, before, after)
	}
}

func TestNotReadyWithoutTable(t *testing.T) {
	e := start(t, freshDB(t), nil)
	if code, _, r, _ := get(t, e.url, "code=PROMO22"); code != 503 || r.Status != "not_ready" {
		t.Fatalf("%d %+v", code, r)
	}
	resp, err := http.Get(e.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz without a table: %d", resp.StatusCode)
	}
	e.srv.Routes.Store(testTable())
	resp, _ = http.Get(e.url + "/readyz")
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz with a table: %d", resp.StatusCode)
	}
}

func TestStorageDownThenBack(t *testing.T) {
	// A private server of our own that we may stop.
	t.Setenv("DATABASE_URL", "")
	own, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()
	e := start(t, own.URL, testTable())
	if _, _, r, _ := get(t, e.url, "code=PROMO22&adv_order_id=before"); r.Status != "approved" {
		t.Fatalf("before: %+v", r)
	}
	if err := own.StopServer(); err != nil {
		t.Fatal(err)
	}
	code, _, r, _ := get(t, e.url, "code=PROMO22&adv_order_id=during")
	if code != 503 || r.Status != "storage_unavailable" {
		t.Fatalf("storage down: %d %+v", code, r)
	}
	resp, _ := http.Get(e.url + "/readyz")
	_ = resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz with storage down: %d", resp.StatusCode)
	}
	if err := own.StartServer(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, func() (bool, string) {
		_, _, r, _ = get(t, e.url, "code=PROMO22&adv_order_id=after")
		return r.Status == "approved", fmt.Sprintf("after recovery: %+v", r)
	})
	var orders []string
	rows, _ := e.db.Query(context.Background(), "select adv_order_id from conversions order by created_at")
	for rows.Next() {
		var o string
		_ = rows.Scan(&o)
		orders = append(orders, o)
	}
	rows.Close()
	if strings.Join(orders, ",") != "before,after" {
		t.Fatalf("rows %v: the refused request must not be stored", orders)
	}
}

func TestGracefulShutdownCommitsEverything(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	someAcked := make(chan struct{})
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := fmt.Sprintf("g-%d", i)
			resp, err := http.Get(fmt.Sprintf("%s/track/promo?code=PROMO22&adv_order_id=%s", e.url, order))
			if err != nil {
				return // refused after shutdown began: not acknowledged
			}
			var r replyBody
			_ = json.NewDecoder(resp.Body).Decode(&r)
			_ = resp.Body.Close()
			if r.Status == "approved" {
				mu.Lock()
				acked = append(acked, order)
				if len(acked) == 10 {
					close(someAcked)
				}
				mu.Unlock()
			}
		}()
	}
	// Shut down while requests are still in flight, but only once some have
	// been acknowledged, so the check below is never vacuous.
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	select {
	case <-someAcked:
	case <-allDone:
		t.Fatalf("only %d of 200 requests acknowledged before shutdown", len(acked))
	}
	e.stop(t)
	<-allDone
	for _, order := range acked {
		var n int
		if err := e.db.QueryRow(context.Background(),
			"select count(*) from conversions where adv_order_id = $1", order).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("acknowledged order %s stored %d times, want 1", order, n)
		}
	}
	t.Logf("acknowledged %d of 200 before and during shutdown; all stored once", len(acked))
}

func TestSnapshotFile(t *testing.T) {
	path := t.TempDir() + "/snap.json"
	if err := SaveSnapshot(path, testTable()); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen, cfg.DatabaseURL, cfg.SnapshotFile = "127.0.0.1:0", freshDB(t), path
	srv, err := NewServer(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.pool.Close()
	if tbl := srv.Routes.Load(); tbl == nil || tbl.Version() != "test-1" || tbl.Len() != 4 {
		t.Fatalf("table from snapshot: %v", tbl)
	}
}

func FuzzParseParams(f *testing.F) {
	for _, s := range []string{"code=PROMO22", "code=PROMO22&amount=19.99&offer_id=7&goal_alias=sale&currency=eur",
		"code=%ff", "code=A&amount=-1", "code=A&adv_param1=%00", "code=A&return=img&conv_status=pending", "a=b&&c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		p, err := QueryOf(v).Params()
		if err != nil {
			return
		}
		if !routing.ValidCode(p.Code) || len(p.AdvOrderID) > maxOrderID || p.OfferID < 0 || p.GoalID < 0 || p.Amount.IsNegative() {
			t.Fatalf("accepted invalid params %+v from %q", p, q)
		}
		if p.Currency != "" && p.Currency != strings.ToUpper(p.Currency) {
			t.Fatalf("currency not normalized: %q", p.Currency)
		}
	})
}

// FuzzParseQueryMatchesURL holds ParseQuery to url.ParseQuery: the same
// values under every key, in order, and an error exactly when it errs.
func FuzzParseQueryMatchesURL(f *testing.F) {
	for _, s := range []string{"code=PROMO22&amount=19.99", "a=1&a=2&b", "a;b=1&c=%zz", "%41=%42+c&&=x&k=", "x=%ff&y=;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		want, werr := url.ParseQuery(raw)
		got, gerr := ParseQuery(raw)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("%q: error %v, url.ParseQuery %v", raw, gerr, werr)
		}
		if !reflect.DeepEqual(url.Values(groupQuery(got)), want) {
			t.Fatalf("%q: %v, url.ParseQuery %v", raw, got, want)
		}
	})
}

func groupQuery(q Query) url.Values {
	v := url.Values{}
	for _, kv := range q {
		v[kv.Key] = append(v[kv.Key], kv.Value)
	}
	return v
}

func TestStorageDownWithSpoolLosesNothing(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	own, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()
	spool := t.TempDir()
	cfg := DefaultConfig()
	cfg.Listen, cfg.DatabaseURL, cfg.SpoolDir, cfg.DrainDelay = "127.0.0.1:0", own.URL, spool, 0
	start := func() (*Server, string, context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := NewServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		srv.Routes.Store(testTable())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx, nil) }()
		return srv, "http://" + srv.Addr(), cancel, done
	}
	_, base, cancel, done := start()
	if _, _, r, _ := get(t, base, "code=PROMO22&adv_order_id=s-before"); r.Status != "approved" {
		t.Fatalf("before: %+v", r)
	}
	if err := own.StopServer(); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, o := range []string{"s-during-1", "s-during-2", "s-during-3"} {
		code, _, r, _ := get(t, base, "code=PROMO22&amount=5&adv_order_id="+o)
		if code != 200 || r.Status != "approved" || r.ConversionID == "" {
			t.Fatalf("with a spool, an outage is answered after the spool write: %d %+v", code, r)
		}
		ids[o] = r.ConversionID
	}
	// The tracker restarts while PostgreSQL is still down: the spool survives.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := own.StartServer(); err != nil {
		t.Fatal(err)
	}
	_, _, cancel, done = start()
	defer func() { cancel(); <-done }()
	db, err := pgxpool.New(context.Background(), own.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	poll.Until(t, 30*time.Second, func() (bool, string) {
		var n int
		_ = db.QueryRow(context.Background(), "select count(*) from conversions where adv_order_id like 's-during-%'").Scan(&n)
		return n == 3, fmt.Sprintf("spooled rows replayed: %d of 3", n)
	})
	for o, id := range ids {
		var got string
		if err := db.QueryRow(context.Background(), "select id::text from conversions where adv_order_id = $1", o).Scan(&got); err != nil || got != id {
			t.Fatalf("%s: stored id %q, acknowledged %q (%v)", o, got, id, err)
		}
	}
}

func TestSpoolReplayIsIdempotentAndBounded(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, 2000)
	if err != nil {
		t.Fatal(err)
	}
	row := Row{PromoCode: "A", AdvOrderID: "x"}
	if err := s.Append([]Row{row, row}); err != nil {
		t.Fatal(err)
	}
	big := make([]Row, 20)
	if err := s.Append(big); err != ErrSpoolFull {
		t.Fatalf("a full spool must refuse: %v", err)
	}
	if err := s.Accepting(); err != ErrSpoolFull {
		t.Fatalf("after a refusal, Accepting: %v", err)
	}
	// A failed replay keeps the rows; the next one delivers them.
	if _, err := s.Replay(10, func([]Row) error { return fmt.Errorf("down") }); err == nil {
		t.Fatal("replay error lost")
	}
	if s.Rows() != 2 {
		t.Fatalf("rows after failed replay: %d", s.Rows())
	}
	var got []Row
	if n, err := s.Replay(10, func(r []Row) error { got = append(got, r...); return nil }); err != nil || n != 2 || len(got) != 2 {
		t.Fatalf("replay: %d %v %d", n, err, len(got))
	}
	if s.Rows() != 0 {
		t.Fatalf("rows after replay: %d", s.Rows())
	}
	if err := s.Accepting(); err != nil {
		t.Fatalf("after a replay emptied it, Accepting: %v", err)
	}
	_ = s.Close()
	// Reopened, nothing is left to replay.
	s, _ = OpenSpool(dir, 2000)
	if s.Rows() != 0 {
		t.Fatalf("reopened: %d", s.Rows())
	}
}

func TestSlowClientsAndUnknownParameters(t *testing.T) {
	e := start(t, freshDB(t), testTable())
	// Unknown parameters are ignored; empty values count as absent.
	if code, _, r, _ := get(t, e.url, "code=PROMO22&utm_source=x&offer_id=&goal_alias=&foo[]=1"); code != 200 || r.Status != "approved" {
		t.Fatalf("unknown/empty parameters: %d %+v", code, r)
	}
	// A client that sends half a request line and stalls is cut off by the
	// read-header timeout instead of holding the connection.
	conn, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /track/promo?code=PROMO22 HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept a stalled client for 20s")
		}
	}
	t.Logf("stalled client disconnected after %s", time.Since(start).Round(time.Millisecond))
}
