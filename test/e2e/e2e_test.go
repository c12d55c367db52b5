// Package e2e drives the whole product end to end: the real manager and
// tracker binaries, etcd + kube-apiserver, PostgreSQL and kubectl, started by
// internal/devstack exactly as `make dev` starts them.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/poll"
	"promocodes.dev/promo-operator/internal/testutil/stacktest"
)

var (
	stack *devstack.Stack
	db    *pgxpool.Pool
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	root := stacktest.Root()
	if err := devstack.Build(ctx, root, nil); err != nil {
		fmt.Fprintln(os.Stderr, "building:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "promo-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := devstack.Start(ctx, devstack.Options{Root: root, Dir: dir, DatabaseURL: os.Getenv("DATABASE_URL"), Out: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the stack:", err)
		return 1
	}
	stack = s
	defer func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the stack:", err)
		}
	}()
	if db, err = pgxpool.New(ctx, s.DatabaseURL); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	code := m.Run()
	if code != 0 {
		for _, p := range []string{"manager", "tracker"} {
			b, _ := os.ReadFile(filepath.Join(s.LogDir, p+".log"))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			fmt.Fprintf(os.Stderr, "--- last lines of %s.log\n%s\n", p, b)
		}
	}
	return code
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func apply(t *testing.T, yaml string) string {
	t.Helper()
	out, err := stack.Kubectl(ctxFor(t), strings.NewReader(yaml), "apply", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := stack.Kubectl(ctxFor(t), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func namespace(t *testing.T, name string) {
	apply(t, fixtures.NamespaceYAML(name))
}

func track(t *testing.T, trackerURL string, kv ...string) devstack.Reply {
	t.Helper()
	p := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		p.Set(kv[i], kv[i+1])
	}
	r, err := devstack.Track(ctxFor(t), trackerURL, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func trackerURL() string { return stack.Trackers["tracker"].URL }

// eventually polls f until it returns "" (success) or the deadline passes.
func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	poll.Until(t, time.Minute, func() (bool, string) {
		last := f()
		return last == "", what + ": " + last
	})
}

func wantReason(t *testing.T, what, reason string, kv ...string) {
	t.Helper()
	eventually(t, what, func() string {
		r := track(t, trackerURL(), kv...)
		if r.Reason == reason || (reason == "" && r.Reason == "" && r.HTTPStatus == 200) {
			return ""
		}
		return fmt.Sprintf("got %d %s/%s, want reason %q", r.HTTPStatus, r.Status, r.Reason, reason)
	})
}

type row struct {
	code, ref, status, currency, source string
	offer, affiliate, goal              int64
	amount, payout, revenue             string
}

func conversion(t *testing.T, id string) row {
	t.Helper()
	var r row
	err := db.QueryRow(ctxFor(t), `select promo_code, promo_code_ref, status, currency, source, offer_id, affiliate_id, goal_id,
		amount::text, payout::text, revenue::text from conversions where id = $1`, id).
		Scan(&r.code, &r.ref, &r.status, &r.currency, &r.source, &r.offer, &r.affiliate, &r.goal, &r.amount, &r.payout, &r.revenue)
	if err != nil {
		t.Fatalf("conversion %s: %v", id, err)
	}
	return r
}

func TestApplyPostbackPixelAndEdits(t *testing.T) {
	namespace(t, "e2e-shop")
	apply(t, fixtures.OfferYAML("e2e-shop", "spring", 101, true)+"---\n"+fixtures.OfferYAML("e2e-shop", "autumn", 102, true))

	start := time.Now()
	apply(t, fixtures.PromoCodeYAML("e2e-shop", "spring22", "SPRING22", "spring", 4242, "  description: 22% off\n"))
	if err := devstack.WaitServable(ctxFor(t), trackerURL(), "SPRING22", 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl apply -> servable at the tracker: %s", time.Since(start).Round(time.Millisecond))

	// The same affiliate reuses the code on another offer.
	apply(t, fixtures.PromoCodeYAML("e2e-shop", "spring22-autumn", "spring22", "autumn", 4242, ""))
	if err := devstack.WaitServable(ctxFor(t), trackerURL(), "SPRING22", 102); err != nil {
		t.Fatal(err)
	}

	// A postback without offer_id goes to the offer the code was created on first.
	r := track(t, trackerURL(), "code", "spring22", "amount", "19.99", "adv_order_id", "e2e-order-1", "adv_param1", "x'; drop table conversions;--")
	if r.HTTPStatus != 200 || r.Status != "approved" || r.ConversionID == "" {
		t.Fatalf("postback: %+v", r)
	}
	got := conversion(t, r.ConversionID)
	want := row{code: "SPRING22", ref: "e2e-shop/spring22", status: "approved", currency: "EUR", source: "postback",
		offer: 101, affiliate: 4242, goal: 1, amount: "19.99", payout: "1.999", revenue: "8.00"}
	if got != want {
		t.Fatalf("row %+v\nwant %+v", got, want)
	}

	// The same order again is a duplicate, with no new row.
	if r := track(t, trackerURL(), "code", "SPRING22", "amount", "19.99", "adv_order_id", "e2e-order-1"); r.Status != "duplicate" {
		t.Fatalf("repeat postback: %+v", r)
	}
	var n int
	if err := db.QueryRow(ctxFor(t), `select count(*) from conversions where adv_order_id = 'e2e-order-1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows for e2e-order-1: %d %v", n, err)
	}

	// offer_id and goal_alias pick the reuse and the goal.
	r = track(t, trackerURL(), "code", "SPRING22", "offer_id", "102", "goal_alias", "lead", "amount", "50")
	if r.Status != "pending" {
		t.Fatalf("lead postback: %+v", r)
	}
	if got := conversion(t, r.ConversionID); got.offer != 102 || got.goal != 2 || got.payout != "1.50" || got.status != "pending" {
		t.Fatalf("lead row %+v", got)
	}

	// A pixel: a GIF, never cached, outcome in a header, a row with source img.
	resp, err := http.Get(trackerURL() + "/track/promo?code=spring22&return=img&adv_order_id=e2e-pixel-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("X-Promo-Status") != "approved" || !strings.HasPrefix(string(body), "GIF89a") {
		t.Fatalf("pixel: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	var source string
	if err := db.QueryRow(ctxFor(t), `select source from conversions where adv_order_id = 'e2e-pixel-1'`).Scan(&source); err != nil || source != "img" {
		t.Fatalf("pixel row source %q %v", source, err)
	}

	// Editing the dates: a future start makes the code inactive; removing it restores it.
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	apply(t, fixtures.PromoCodeYAML("e2e-shop", "spring22", "SPRING22", "spring", 4242, "  startDate: \""+future+"\"\n"))
	wantReason(t, "scheduled code", "code_not_active", "code", "SPRING22", "offer_id", "101", "goal_alias", devstack.ProbeGoalAlias)
	eventually(t, "kubectl shows Scheduled", func() string {
		out := kubectl(t, "get", "promocode", "spring22", "-n", "e2e-shop")
		if strings.Contains(out, "Scheduled") {
			return ""
		}
		return out
	})
	// Without offer_id the other, still active, reuse now takes the conversion.
	wantReason(t, "fallback to the active reuse", "unknown_goal", "code", "SPRING22", "goal_alias", devstack.ProbeGoalAlias)
	apply(t, fixtures.PromoCodeYAML("e2e-shop", "spring22", "SPRING22", "spring", 4242, ""))
	wantReason(t, "dates removed", "unknown_goal", "code", "SPRING22", "offer_id", "101", "goal_alias", devstack.ProbeGoalAlias)

	// Disabling promo codes on the offer deactivates its codes; re-enabling restores them.
	apply(t, fixtures.OfferYAML("e2e-shop", "spring", 101, false))
	wantReason(t, "offer disabled", "code_not_active", "code", "SPRING22", "offer_id", "101", "goal_alias", devstack.ProbeGoalAlias)
	eventually(t, "kubectl shows Inactive", func() string {
		out := kubectl(t, "get", "promocode", "spring22", "-n", "e2e-shop", "-o", "jsonpath={.status.state}")
		if out == "Inactive" {
			return ""
		}
		return out
	})
	apply(t, fixtures.OfferYAML("e2e-shop", "spring", 101, true))
	wantReason(t, "offer re-enabled", "unknown_goal", "code", "SPRING22", "offer_id", "101", "goal_alias", devstack.ProbeGoalAlias)

	// Deleting a code removes it from the tracker.
	kubectl(t, "delete", "promocode", "spring22-autumn", "-n", "e2e-shop")
	wantReason(t, "deleted code", "code_not_on_offer", "code", "SPRING22", "offer_id", "102", "goal_alias", devstack.ProbeGoalAlias)
}

func TestConflictingCodeIsRefused(t *testing.T) {
	namespace(t, "e2e-a")
	namespace(t, "e2e-b")
	apply(t, fixtures.OfferYAML("e2e-a", "offer-a", 201, true))
	apply(t, fixtures.OfferYAML("e2e-b", "offer-b", 202, true))
	apply(t, fixtures.PromoCodeYAML("e2e-a", "owned", "OWNED1", "offer-a", 1, ""))
	if err := devstack.WaitServable(ctxFor(t), trackerURL(), "OWNED1", 0); err != nil {
		t.Fatal(err)
	}
	out, err := stack.Kubectl(ctxFor(t), strings.NewReader(fixtures.PromoCodeYAML("e2e-b", "stolen", "owned1", "offer-b", 2, "")), "apply", "-f", "-")
	if err == nil {
		t.Fatalf("another affiliate's code was admitted: %s", out)
	}
	if !strings.Contains(out, "e2e-a/owned") || !strings.Contains(out, "affiliate 1") {
		t.Fatalf("refusal should name the holder: %s", out)
	}
	// The code still routes to its owner only.
	wantReason(t, "owner keeps the code", "code_not_on_offer", "code", "OWNED1", "offer_id", "202", "goal_alias", devstack.ProbeGoalAlias)

	// A malformed code is refused by the API server with a clear message.
	out, err = stack.Kubectl(ctxFor(t), strings.NewReader(fixtures.PromoCodeYAML("e2e-a", "bad", "OWNED-1", "offer-a", 1, "")), "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "Latin letters") {
		t.Fatalf("malformed code: %v %s", err, out)
	}

	// kubectl get promo lists both kinds.
	list := kubectl(t, "get", "promo", "-n", "e2e-a")
	for _, want := range []string{"offer.tracking.promocodes.dev/offer-a", "promocode.tracking.promocodes.dev/owned", "OWNED1", "Active"} {
		if !strings.Contains(list, want) {
			t.Fatalf("kubectl get promo lacks %q:\n%s", want, list)
		}
	}
}

// TestManagerDown restarts the manager: trackers keep serving meanwhile, a
// tracker started while it is down serves from its snapshot file, and both
// resync when it returns.
func TestManagerDown(t *testing.T) {
	namespace(t, "e2e-ha")
	apply(t, fixtures.OfferYAML("e2e-ha", "steady", 301, true))
	apply(t, fixtures.PromoCodeYAML("e2e-ha", "steady1", "STEADY1", "steady", 9, ""))
	if err := devstack.WaitServable(ctxFor(t), trackerURL(), "STEADY1", 0); err != nil {
		t.Fatal(err)
	}
	// Let the tracker save its snapshot (debounced), then stop the manager.
	eventually(t, "snapshot file holds STEADY1", func() string {
		b, err := os.ReadFile(stack.Trackers["tracker"].SnapshotFile)
		if err != nil || !strings.Contains(string(b), "STEADY1") {
			return fmt.Sprintf("snapshot: %v", err)
		}
		return ""
	})
	if err := stack.StopManager(); err != nil {
		t.Fatal(err)
	}
	r := track(t, trackerURL(), "code", "STEADY1", "amount", "10")
	if r.Status != "approved" {
		t.Fatalf("tracker must keep serving while the manager is down: %+v", r)
	}

	// A second tracker starts from a snapshot file while the manager is down.
	snap, err := os.ReadFile(stack.Trackers["tracker"].SnapshotFile)
	if err != nil {
		t.Fatal(err)
	}
	cold := filepath.Join(filepath.Dir(stack.Trackers["tracker"].SnapshotFile), "cold-snapshot.json")
	if err := os.WriteFile(cold, snap, 0o644); err != nil {
		t.Fatal(err)
	}
	t2, err := stack.StartTracker(ctxFor(t), "cold", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := track(t, t2.URL, "code", "STEADY1", "amount", "5"); r.Status != "approved" {
		t.Fatalf("cold tracker from snapshot: %+v", r)
	}

	// The manager returns; a code created now reaches both trackers.
	if err := stack.StartManager(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	apply(t, fixtures.PromoCodeYAML("e2e-ha", "after1", "AFTER1", "steady", 9, ""))
	for _, u := range []string{trackerURL(), t2.URL} {
		if err := devstack.WaitServable(ctxFor(t), u, "AFTER1", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := t2.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	delete(stack.Trackers, "cold")
}

func TestReplyReasons(t *testing.T) {
	namespace(t, "e2e-r")
	apply(t, fixtures.OfferYAML("e2e-r", "reasons", 401, true))
	apply(t, fixtures.PromoCodeYAML("e2e-r", "r1", "REASON1", "reasons", 3, ""))
	if err := devstack.WaitServable(ctxFor(t), trackerURL(), "REASON1", 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kv     []string
		status int
		reason string
	}{
		{[]string{"code", "BAD-CODE"}, 400, "bad_request"},
		{[]string{"code", "NOSUCHCODE"}, 404, "unknown_code"},
		{[]string{"code", "REASON1", "offer_id", "999"}, 404, "code_not_on_offer"},
		{[]string{"code", "REASON1", "goal_id", "77"}, 404, "unknown_goal"},
	} {
		r := track(t, trackerURL(), tc.kv...)
		if r.HTTPStatus != tc.status || !slices.Contains([]string{r.Reason, r.Status}, tc.reason) {
			t.Errorf("%v: got %d %s/%s, want %d %s", tc.kv, r.HTTPStatus, r.Status, r.Reason, tc.status, tc.reason)
		}
	}
}
