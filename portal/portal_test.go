package portal

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/pgtest"
	"promocodes.dev/promo-operator/internal/testutil/poll"
	"promocodes.dev/promo-operator/tracker"
)

const token = "portal-test-token"

var (
	pg      *pgtest.Server
	restCfg *rest.Config
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	var err error
	if pg, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join("..", "bin", "k8s"), // KUBEBUILDER_ASSETS wins when set
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	if restCfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = pg.Stop()
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	_ = pg.Stop()
	os.Exit(code)
}

var testScheme = sync.OnceValues(func() (*k8sruntime.Scheme, error) {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, trackingv1alpha1.AddToScheme(s)
})

// fixture is a portal over a fresh, migrated database and the shared API server.
type fixture struct {
	url  string
	db   *pgxpool.Pool // owner connection, for inserting test rows
	kube client.Client
	ns   string
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith lets a test adjust the server's Config (the clock).
func newFixtureWith(t *testing.T, configure func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	u, drop, err := pg.FreshDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	db, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := tracker.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}

	// One scheme, built once: registering types again while an earlier
	// fixture's cache still reads the scheme is a data race.
	scheme, err := testScheme()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("portal-%d", time.Now().UnixNano())
	if err := kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	c, err := kube.NewCache(restCfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := IndexCodes(cctx, c); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(cctx) }()

	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	ReadOnly(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	scfg := Config{Token: token}
	if configure != nil {
		configure(&scfg)
	}
	srv := NewServer(scfg, &Store{Pool: pool}, &Codes{Reader: c}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &fixture{url: hs.URL, db: db, kube: kc, ns: ns}
}

// insert adds n conversions, one second apart, the newest at base.
func (f *fixture) insert(t *testing.T, n int, base time.Time, code string, offer, affiliate int64, status string) {
	t.Helper()
	_, err := f.db.Exec(context.Background(), `
INSERT INTO conversions (id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id, status,
                         amount, payout, revenue, currency, adv_order_id, adv_param1, source)
SELECT gen_random_uuid(), $1::timestamptz - make_interval(secs => g), $2::text, 'shop/' || lower($2::text), $3::bigint, $4::bigint, 1, $5::text,
       19.99, 2.00, 5.50, 'USD', $2::text || '-' || $3::bigint || '-' || g, 'p' || g, 'postback'
  FROM generate_series(0, $6::int - 1) AS g`, base, code, offer, affiliate, status, n)
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, path string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (f *fixture) page(t *testing.T, query string) Page {
	t.Helper()
	status, _, body := f.get(t, "/api/v1/transactions?"+query)
	if status != 200 {
		t.Fatalf("transactions?%s: %d %s", query, status, body)
	}
	var p Page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, auth string }{{"none", ""}, {"wrong token", "Bearer nope"}, {"basic", "Basic dXNlcjpwYXNz"}} {
		req, _ := http.NewRequest(http.MethodGet, f.url+"/api/v1/transactions", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(body) != `{"error":"unauthorized","message":"send Authorization: Bearer <token>"}`+"\n" {
			t.Errorf("%s: body %s", tc.name, body)
		}
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %q, want 401 with WWW-Authenticate", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if status, _, _ := f.get(t, "/api/v1/transactions"); status != 200 {
		t.Errorf("with the token: %d", status)
	}

	// People sign in once with the token and get a session cookie that is not the token.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(f.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), `name="token"`) {
		t.Fatalf("page without a session: %d, want 401 with the sign-in form", resp.StatusCode)
	}
	resp, _ = browser.PostForm(f.url+"/login", url.Values{"token": {"wrong"}})
	_ = resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("sign-in with a wrong token: %d", resp.StatusCode)
	}
	resp, _ = browser.PostForm(f.url+"/login", url.Values{"token": {token}})
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<th scope="col">Promo Code</th>`) {
		t.Fatalf("after sign-in: %d, want the reports page", resp.StatusCode)
	}
	u, _ := url.Parse(f.url)
	for _, c := range jar.Cookies(u) {
		if strings.Contains(c.Value, token) {
			t.Fatalf("session cookie carries the token")
		}
	}
	resp, _ = browser.Get(f.url + "/api/v1/transactions")
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API with the session cookie (the page's CSV link): %d", resp.StatusCode)
	}
}

func TestTransactionsPagingIsStable(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC().Truncate(time.Second)
	f.insert(t, 70, now, "PROMO22", 7, 42, "approved")
	f.insert(t, 50, now.Add(-500*time.Millisecond), "Summer5", 8, 43, "pending")

	var all []Transaction
	cursor := ""
	for pages := 0; ; pages++ {
		q := "limit=50"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		p := f.page(t, q)
		all = append(all, p.Items...)
		if pages == 0 {
			// New conversions arriving while someone pages must not shift later pages.
			f.insert(t, 5, now.Add(time.Minute), "LATE", 7, 42, "approved")
		}
		if p.NextCursor == "" {
			if len(p.Items) != 20 {
				t.Fatalf("last page has %d items, want 20", len(p.Items))
			}
			break
		}
		cursor = p.NextCursor
	}
	if len(all) != 120 {
		t.Fatalf("paged through %d transactions, want 120", len(all))
	}
	seen := map[string]bool{}
	for i, tx := range all {
		if seen[tx.ID] {
			t.Fatalf("transaction %s on two pages", tx.ID)
		}
		seen[tx.ID] = true
		if tx.PromoCode == "LATE" {
			t.Fatalf("a row newer than the first page appeared on a later page")
		}
		if i > 0 && (tx.CreatedAt.After(all[i-1].CreatedAt) || tx.CreatedAt.Equal(all[i-1].CreatedAt) && tx.ID > all[i-1].ID) {
			t.Fatalf("not newest first at %d: %v after %v", i, tx.CreatedAt, all[i-1].CreatedAt)
		}
	}
	first := all[0]
	if first.Amount != "19.99" || first.Payout != "2.00" || first.Revenue != "5.50" || first.Currency != "USD" || first.AdvParam1 != "p0" {
		t.Fatalf("amounts must be exact decimal strings as stored: %+v", first)
	}
}

func TestTransactionFilters(t *testing.T) {
	f := newFixture(t)
	day := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	f.insert(t, 3, day, "PROMO22", 7, 42, "approved")
	f.insert(t, 2, day.AddDate(0, 0, 1), "PROMO22", 8, 42, "pending")
	f.insert(t, 4, day.AddDate(0, 0, 2), "VIP10", 9, 77, "declined")

	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 9},
		{"promo_code=promo22", 5}, // case-insensitive
		{"promo_code=Promo22&offer_id=8", 2},
		{"affiliate_id=77", 4},
		{"status=pending", 2},
		{"from=2026-11-21", 6},
		{"to=2026-11-21", 5}, // a bare date in `to` includes that day
		{"from=2026-11-21T11:00:00Z&to=2026-11-21T12:00:00Z", 1}, // to is exclusive for a time
		{"promo_code=NOPE", 0},
	} {
		p := f.page(t, tc.query)
		if len(p.Items) != tc.want {
			t.Errorf("?%s: %d transactions, want %d", tc.query, len(p.Items), tc.want)
		}
	}

	for _, tc := range []struct{ query, param string }{
		{"promo_code=PROMO-22", "promo_code"},
		{"offer_id=seven", "offer_id"},
		{"affiliate_id=0", "affiliate_id"},
		{"status=paid", "status"},
		{"from=yesterday", "from"},
		{"from=2026-11-22&to=2026-11-21", "to"},
		{"limit=5000", "limit"},
		{"cursor=bm9wZQ", "cursor"},
	} {
		status, _, body := f.get(t, "/api/v1/transactions?"+tc.query)
		var e errorBody
		_ = json.Unmarshal(body, &e)
		if status != 400 || e.Error != "bad_request" || !strings.HasPrefix(e.Message, tc.param+": ") {
			t.Errorf("?%s: %d %s, want 400 naming %s", tc.query, status, body, tc.param)
		}
	}
}

func TestCSVStreamsEverythingInLittleMemory(t *testing.T) {
	f := newFixture(t)
	const n = 400_000
	f.insert(t, n, time.Now().UTC(), "BULK1", 7, 42, "approved")
	f.insert(t, 3, time.Now().UTC().Add(-time.Hour*24*365), "Other", 8, 43, "approved")

	req, _ := http.NewRequest(http.MethodGet, f.url+"/api/v1/transactions?promo_code=bulk1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/csv")
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := csv.NewReader(bufio.NewReader(resp.Body))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil || !slices.Equal(header, Columns) {
		t.Fatalf("header %v (%v)", header, err)
	}
	rows := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec[2] != "BULK1" || rec[8] != "19.99" {
			t.Fatalf("row %d: %v", rows, rec)
		}
		rows++
	}
	took := time.Since(start)
	close(stop)
	if rows != n {
		t.Fatalf("csv rows %d, want %d", rows, n)
	}
	// Held in memory, 400k rows would be well over 100 MiB; streamed, the
	// heap stays at a few MiB (the envtest client and pools included).
	if p := peak.Load(); p > 64<<20 {
		t.Fatalf("heap peaked at %d MiB while streaming: rows are being held", p>>20)
	}
	t.Logf("streamed %d rows as CSV in %s (%.0f rows/s), heap peak %d MiB", rows, took.Round(time.Millisecond), float64(rows)/took.Seconds(), peak.Load()>>20)

	status, _, body := f.get(t, "/api/v1/transactions?format=csv&promo_code=OTHER&limit=2")
	if lines := strings.Count(string(body), "\n"); status != 200 || lines != 3 {
		t.Fatalf("format=csv with limit=2: %d, %d lines", status, lines)
	}
}

func TestAffiliatePromoCodes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	offer := func(name string, id int64, title string, enabled bool) {
		o := fixtures.Offer(f.ns, name, id, enabled)
		o.Spec.Title = title
		if err := f.kube.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	start := metav1.NewTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	code := func(name, c, offer string, aff int64, state trackingv1alpha1.PromoCodeState, desc string) {
		pc := fixtures.PromoCode(f.ns, name, c, offer, aff)
		pc.Spec.Description = desc
		if state == trackingv1alpha1.StateScheduled {
			pc.Spec.StartDate = &start
		}
		if err := f.kube.Create(ctx, pc); err != nil {
			t.Fatal(err)
		}
		// The manager writes status; no manager runs here, so the test does.
		pc.Status.State = state
		if err := f.kube.Status().Update(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	offer("summer", 7, "Summer sale", true)
	offer("winter", 8, "Winter sale", true)
	offer("closed", 9, "Closed", false)
	code("a", "PROMO22", "summer", 42, trackingv1alpha1.StateActive, "20% off")
	code("b", "PROMO22", "winter", 42, trackingv1alpha1.StateActive, "")
	code("c", "NEWYEAR27", "summer", 42, trackingv1alpha1.StateScheduled, "New year")
	code("d", "CLOSED1", "closed", 42, trackingv1alpha1.StateInactive, "") // offer without promo codes
	code("e", "Taken", "summer", 42, trackingv1alpha1.StateRejected, "")   // lost the code to another affiliate
	code("f", "OTHERS", "summer", 43, trackingv1alpha1.StateActive, "")    // another affiliate's
	code("g", "ORPHAN", "missing", 42, trackingv1alpha1.StateInactive, "") // offer does not exist

	want := []string{"NEWYEAR27@7", "PROMO22@7", "PROMO22@8"}
	var got []Code
	poll.Until(t, 30*time.Second, func() (bool, string) { // the cache catches up with the writes
		status, _, body := f.get(t, "/api/v1/affiliates/42/promo-codes")
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		var out struct{ Items []Code }
		_ = json.Unmarshal(body, &out)
		got = out.Items
		return slices.Equal(keys(got), want), fmt.Sprintf("affiliate 42 sees %v, want %v", keys(got), want)
	})
	ny := got[0]
	if ny.OfferTitle != "Summer sale" || ny.Description != "New year" || ny.State != "Scheduled" || ny.StartDate == nil || !ny.StartDate.Equal(start.Time) || ny.EndDate != nil {
		t.Fatalf("NEWYEAR27: %+v", ny)
	}
	status, _, body := f.get(t, "/api/v1/affiliates/42/promo-codes?offer_id=8")
	var out struct{ Items []Code }
	_ = json.Unmarshal(body, &out)
	if status != 200 || !slices.Equal(keys(out.Items), []string{"PROMO22@8"}) {
		t.Fatalf("offer_id=8: %d %v", status, keys(out.Items))
	}
	for _, path := range []string{"/api/v1/affiliates/abc/promo-codes", "/api/v1/affiliates/0/promo-codes", "/api/v1/affiliates/42/promo-codes?offer_id=x"} {
		if status, _, _ := f.get(t, path); status != 400 {
			t.Errorf("%s: %d, want 400", path, status)
		}
	}

	// The page's Promo Codes report shows every state, the rejected one included.
	status, _, page := f.get(t, "/?affiliate_id=42")
	for _, s := range []string{"PROMO22", "NEWYEAR27", "Taken", "Rejected", "CLOSED1", "missing (missing)", "20% off"} {
		if status != 200 || !strings.Contains(string(page), s) {
			t.Errorf("page for affiliate 42 lacks %q (status %d)", s, status)
		}
	}
	if strings.Contains(string(page), "OTHERS") {
		t.Errorf("page for affiliate 42 shows affiliate 43's code")
	}
}

func keys(codes []Code) []string {
	var out []string
	for _, c := range codes {
		out = append(out, fmt.Sprintf("%s@%d", c.Code, c.OfferID))
	}
	return out
}

func TestReadOnlyRole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	script, err := os.ReadFile(filepath.Join("..", "config", "portal", "readonly-role.sql"))
	if err != nil {
		t.Fatal(err)
	}
	role := fmt.Sprintf("portal_ro_%d", time.Now().UnixNano())
	for _, stmt := range ReadOnlyRoleSQL(string(script), role, "pa'ss") {
		if _, err := f.db.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		_, _ = f.db.Exec(context.Background(), "REVOKE ALL ON conversions FROM "+role)
		_, _ = f.db.Exec(context.Background(), "REVOKE ALL ON conversion_status_changes FROM "+role)
		_, _ = f.db.Exec(context.Background(), "REVOKE ALL ON SCHEMA public FROM "+role)
		_, _ = f.db.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	cfg, _ := pgxpool.ParseConfig(f.db.Config().ConnString())
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "pa'ss"
	ro, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	f.insert(t, 2, time.Now(), "PROMO22", 7, 42, "approved")
	var n int
	if err := ro.QueryRow(ctx, "select count(*) from conversions").Scan(&n); err != nil || n != 2 {
		t.Fatalf("read-only role reads %d rows (%v), want 2", n, err)
	}
	// The status history (GET /api/v1/transactions/{id}) needs the second table.
	if err := ro.QueryRow(ctx, "select count(*) from conversion_status_changes").Scan(&n); err != nil || n != 0 {
		t.Fatalf("read-only role reads %d status changes (%v), want 0", n, err)
	}
	_, err = ro.Exec(ctx, "delete from conversions")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || (pgErr.Code != "25006" && pgErr.Code != "42501") {
		t.Fatalf("read-only role deleted rows: %v", err)
	}
}

func TestMetricsAndProbes(t *testing.T) {
	f := newFixture(t)
	f.get(t, "/api/v1/transactions")
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _, body := f.get(t, p); status != 200 {
			t.Fatalf("%s: %d %s", p, status, body)
		}
	}
	_, _, body := f.get(t, "/metrics")
	if !strings.Contains(string(body), `promo_portal_requests_total{code="200",handler="transactions"} 1`) {
		t.Fatalf("metrics lack the transactions request:\n%s", body)
	}
	// The portal's own metrics share one prefix; Go's and the process's keep theirs.
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		if !strings.HasPrefix(name, "promo_portal_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s is not under promo_portal_", name)
		}
	}
	if strings.Contains(string(body), token) {
		t.Fatal("metrics contain the token")
	}
}
