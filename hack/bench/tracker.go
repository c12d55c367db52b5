package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/loadgen"
	"promocodes.dev/promo-operator/internal/routing"
)

// trackerArgs are extra flags for the tracker under test (-tracker-args).
var trackerArgs string

// onlyTracker skips the baselines (-only-tracker, for experiments).
var onlyTracker bool

// conns is the number of keep-alive connections of the fixed-load steps
// (-conns); sweepConns the counts tried at sweepRate (-sweep-conns), the
// evidence for how much the connection count alone moves the tail.
var (
	conns      = 512
	sweepConns = []int{16, 64, 256, 512}
	sweepRate  = 10_000
	// saturationConns are the connection counts of the maximum-throughput
	// steps (-saturation-conns); a server's maximum is its best of them.
	saturationConns = []int{256, 1024}
)

// webhookRate and webhookConns are the fixed load of the shop webhook step
// (-webhook-rate, -webhook-conns; rate 0: skip), run against the tracker
// under test beside postbacks at the same rate.
var (
	webhookRate  = 1000
	webhookConns = 64
)

// The benchmark's Shopify storefront (in the snapshot).
const (
	benchStorefront = "bench/shop"
	benchShop       = "bench.myshopify.com"
	benchSecret     = "bench-webhook-secret"
	fixtureOrderID  = "820982911946154508" // the id in tracker/testdata/shopify/orders_create.json
)

// compareWriters adds a run of the tracker with --writers=N (0: none), the
// evidence behind the default of one writer.
var compareWriters int

type target struct {
	Name       string           `json:"name"`
	Saturation []sweepStep      `json:"saturation"` // offered 100k req/s at each of saturationConns
	Steps      []loadgen.Result `json:"steps"`
	Sweep      []sweepStep      `json:"sweep"` // sweepRate at each of sweepConns; not for the naive baseline
	// Webhooks: postbacks, then Shopify deliveries, at webhookRate (the tracker under test only).
	Webhooks []webhookStep `json:"webhooks,omitempty"`
	Acked    int           `json:"acked"`
	Rows     int           `json:"rows"`
	Lost     int           `json:"lost"`
	Writes   bool          `json:"writes"`  // false: the ceiling
	Tracker  bool          `json:"tracker"` // the tracker under test; a writer that is not is the naive baseline
	// CPU by step tag (saturation256, load2000, ...).
	CPU map[string]cpuSplit `json:"cpu"`
	// StatusSteps: status changes at statusRates (the tracker under test only).
	StatusSteps []statusStep `json:"status_steps"`
}

type webhookStep struct {
	Traffic string         `json:"traffic"`
	Tag     string         `json:"tag"` // in target.CPU
	Result  loadgen.Result `json:"result"`
}

type sweepStep struct {
	Conns  int            `json:"conns"`
	Result loadgen.Result `json:"result"`
}

// sweepTag names a sweep step in target.CPU.
func sweepTag(conns int) string { return fmt.Sprintf("sweep%d", conns) }

// saturationTag names a maximum-throughput step in target.CPU.
func saturationTag(conns int) string { return fmt.Sprintf("saturation%d", conns) }

// completed is a step's completed requests per second.
func completed(r loadgen.Result) float64 { return float64(r.OK+r.Non200) / r.Elapsed.Seconds() }

// best is the maximum-throughput step with the most completed req/s.
func (t *target) best() (sweepStep, bool) {
	if len(t.Saturation) == 0 {
		return sweepStep{}, false
	}
	b := t.Saturation[0]
	for _, s := range t.Saturation[1:] {
		if completed(s.Result) > completed(b.Result) {
			b = s
		}
	}
	return b, true
}

// snapshotFile writes a routing table with n codes over 1000 offers, the
// table the tracker serves during the benchmark, and a Shopify storefront on
// the first 10 offers; shopCodes are the codes on those.
func snapshotFile(path string, n int) (names, shopCodes []string, err error) {
	created := metav1.NewTime(time.Now().Add(-time.Hour))
	var offers []*trackingv1alpha1.Offer
	for i := range 1000 {
		offers = append(offers, &trackingv1alpha1.Offer{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("offer%d", i), CreationTimestamp: created},
			Spec: trackingv1alpha1.OfferSpec{ID: int64(i + 1), Currency: "USD",
				Tracking: trackingv1alpha1.Tracking{PromoCodes: trackingv1alpha1.PromoCodeTracking{Enabled: true}},
				Goals: []trackingv1alpha1.Goal{{ID: 1, Alias: "sale", Default: true, Status: "approved",
					Payout: trackingv1alpha1.Money{Percent: ptr.To("10")}, Revenue: trackingv1alpha1.Money{Fixed: ptr.To("8.00")}}}},
		})
	}
	codes := make([]*trackingv1alpha1.PromoCode, 0, n)
	names = make([]string, 0, n)
	for i := range n {
		c := fmt.Sprintf("BENCH%d", i)
		names = append(names, c)
		if i%1000 < 10 {
			shopCodes = append(shopCodes, c)
		}
		codes = append(codes, &trackingv1alpha1.PromoCode{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("c%d", i), CreationTimestamp: created},
			Spec:       trackingv1alpha1.PromoCodeSpec{Code: c, OfferRef: trackingv1alpha1.LocalOfferReference{Name: fmt.Sprintf("offer%d", i%1000)}, AffiliateID: int64(i%5000 + 1)},
		})
	}
	snap := routing.Compile("bench-1", kube.Offers(offers), kube.Claims(codes), nil)
	sf := routing.Storefront{Ref: benchStorefront, Platform: routing.PlatformShopify, Shop: benchShop, Secret: []byte(benchSecret), Amount: "subtotal"}
	for i := range 10 {
		sf.OfferRefs = append(sf.OfferRefs, fmt.Sprintf("bench/offer%d", i))
	}
	snap.Storefronts = []routing.Storefront{sf}
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, nil, err
	}
	return names, shopCodes, os.WriteFile(path, b, 0o600)
}

// shopifyDeliveries builds n signed orders/create deliveries of the order
// fixture, each with its own order id (base+i) and one of codes.
func shopifyDeliveries(order []byte, n int, base int64, codes []string) ([]*loadgen.Request, []string) {
	reqs := make([]*loadgen.Request, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = strconv.FormatInt(base+int64(i), 10)
		body := bytes.ReplaceAll(order, []byte(fixtureOrderID), []byte(ids[i]))
		body = bytes.Replace(body, []byte(`"promo22"`), []byte(`"`+codes[rand.IntN(len(codes))]+`"`), 1)
		mac := hmac.New(sha256.New, []byte(benchSecret))
		mac.Write(body)
		reqs[i] = &loadgen.Request{Method: http.MethodPost, Body: body, Header: []loadgen.Header{
			{Key: "Content-Type", Value: "application/json"}, {Key: "X-Shopify-Topic", Value: "orders/create"},
			{Key: "X-Shopify-Shop-Domain", Value: benchShop}, {Key: "X-Shopify-Hmac-Sha256", Value: base64.StdEncoding.EncodeToString(mac.Sum(nil))},
		}}
	}
	return reqs, ids
}

type server struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func startServer(ctx context.Context, name, logDir string, env []string, bin string, args ...string) (*server, error) {
	log, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = log.Close(); close(s.done) }()
	return s, nil
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// waitReady polls u until it answers 200.
func waitReady(ctx context.Context, u string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready", u)
}

func runTracker(ctx context.Context, r *report, step time.Duration, loads []int, nCodes int) error {
	dir, err := os.MkdirTemp("", "promo-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("==> building bin/tracker and the benchmark binary")
	if _, err := run(ctx, r.Root, nil, "go", "build", "-o", filepath.Join(r.Root, "bin", "tracker"), "./cmd/tracker"); err != nil {
		return err
	}
	self := filepath.Join(dir, "bench")
	if _, err := run(ctx, filepath.Join(r.Root, "hack", "bench"), nil, "go", "build", "-o", self, "."); err != nil {
		return err
	}
	fmt.Println("==> starting PostgreSQL (fsync on, synchronous_commit on)")
	pgDir := filepath.Join(dir, "pg")
	out, err := run(ctx, r.Root, nil, "bash", "hack/ensure-postgres.sh", "start", pgDir)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = run(context.Background(), r.Root, nil, "bash", "hack/ensure-postgres.sh", "stop", pgDir)
	}()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	dbURL := strings.TrimSpace(lines[len(lines)-1])
	if _, err := run(ctx, r.Root, nil, filepath.Join(r.Root, "bin", "tracker"), "migrate", "--database-url="+dbURL); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var sc string
	_ = conn.QueryRow(ctx, "show synchronous_commit").Scan(&sc)
	r.Notes = append(r.Notes, "PostgreSQL synchronous_commit="+sc+", fsync on, a private cluster on the same machine")
	snap := filepath.Join(dir, "snapshot.json")
	codes, shopCodes, err := snapshotFile(snap, nCodes)
	if err != nil {
		return err
	}
	r.TableCodes = nCodes
	order, err := os.ReadFile(filepath.Join(r.Root, "tracker", "testdata", "shopify", "orders_create.json"))
	if err != nil {
		return err
	}
	r.WebhookBytes = len(order)

	type spec struct {
		name     string
		bin      string
		args     func(addr string) []string
		tracker  bool   // the tracker under test: kept by -only-tracker, ready on /readyz
		sweep    bool   // run the connection sweep
		db       string // its database when not dbURL
		status   bool   // run the status-change steps
		webhooks bool   // run the webhook step
	}
	trackerBinSpec := func(name, bin, db string, extra ...string) spec {
		return spec{name, bin, func(a string) []string {
			args := append([]string{"--listen=" + a, "--database-url=" + db, "--snapshot-file=" + snap}, extra...)
			return append(args, strings.Fields(trackerArgs)...)
		}, true, true, db, false, false}
	}
	trackerSpec := func(name string, extra ...string) spec {
		return trackerBinSpec(name, filepath.Join(r.Root, "bin", "tracker"), dbURL, extra...)
	}
	specs := []spec{
		{"ceiling (pixel, no write)", self, func(a string) []string { return []string{"serve-ceiling", a} }, false, true, "", false, false},
		// The naive baseline saturates below the sweep's rate: a sweep would only measure its queue.
		{"naive (1 INSERT per request)", self, func(a string) []string { return []string{"serve-naive", a, dbURL} }, false, false, "", false, false},
	}
	if beforeRef != "" {
		// The tracker before the change under test, on a database of its own
		// migrations, run before it: the group commit before and after.
		bin, commit, err := buildBefore(ctx, r.Root, dir)
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE bench_before"); err != nil {
			return err
		}
		beforeURL := strings.Replace(dbURL, "/"+conn.Config().Database, "/bench_before", 1)
		if _, err := run(ctx, r.Root, nil, bin, "migrate", "--database-url="+beforeURL); err != nil {
			return err
		}
		r.Notes = append(r.Notes, fmt.Sprintf("The tracker before the change (%s, commit %s) is built from git and runs on a database migrated by itself, in the same run as the tracker under test.", beforeRef, commit))
		specs = append(specs, trackerBinSpec(fmt.Sprintf("tracker before (%s)", commit), bin, beforeURL))
	}
	under := trackerSpec("promo-operator tracker")
	under.status = len(statusRates) > 0
	under.webhooks = webhookRate > 0
	specs = append(specs, under)
	if compareWriters > 0 {
		specs = append(specs, trackerSpec(fmt.Sprintf("tracker with --writers=%d", compareWriters), fmt.Sprintf("--writers=%d", compareWriters)))
	}
	for ti, sp := range specs {
		if onlyTracker && !sp.tracker {
			continue
		}
		port, err := devstack.FreePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		fmt.Printf("==> %s on %s\n", sp.name, addr)
		srv, err := startServer(ctx, fmt.Sprintf("target%d", ti), dir, nil, sp.bin, sp.args(addr)...)
		if err != nil {
			return err
		}
		base := "http://" + addr
		ready := "/healthz"
		if sp.tracker {
			ready = "/readyz"
		}
		if err := waitReady(ctx, base+ready); err != nil {
			srv.stop()
			return err
		}
		conn := conn
		if sp.db != "" && sp.db != dbURL {
			if conn, err = pgx.Connect(ctx, sp.db); err != nil {
				srv.stop()
				return err
			}
			defer conn.Close(context.Background())
		}
		// cascade: conversion_status_changes, when the schema has it.
		if _, err := conn.Exec(ctx, "truncate conversions cascade"); err != nil {
			srv.stop()
			return err
		}
		t := target{Name: sp.name, Writes: ti > 0, Tracker: sp.tracker, CPU: map[string]cpuSplit{}}
		meter := &cpuMeter{server: srv.cmd.Process.Pid, pgDir: pgDir}
		acked := map[string]bool{}
		runOnce := func(tag string, rate, workers int, d time.Duration) loadgen.Result {
			// Lean per-request work: the generator shares the server's cores.
			orderPrefix := fmt.Sprintf("t%d-%s-", ti, tag)
			prefix := base + "/track/promo?amount=19.99&adv_order_id=" + orderPrefix
			ok := make([]bool, int(float64(rate)*d.Seconds()))
			meter.start()
			res := loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: d, Workers: workers,
				URL: func(i int) string {
					u := prefix + strconv.Itoa(i) + "&code=" + codes[rand.IntN(len(codes))]
					if i%2 == 1 {
						u += "&return=img"
					}
					return u
				},
				OnReply: func(i, status int, promo string, body []byte) {
					ok[i] = status == 200 && (promo == "approved" || bytes.Contains(body, []byte(`"approved"`)))
				},
			})
			cpu := meter.stop()
			for i, a := range ok {
				if a {
					acked[orderPrefix+strconv.Itoa(i)] = true
				}
			}
			t.CPU[tag] = cpu
			fmt.Printf("    %s: %s; CPU cores: loadgen %.2f, server %.2f, postgres %.2f\n", tag, res, cpu.LoadGen, cpu.Server, cpu.Postgres)
			return res
		}
		runOnce("warmup", 1000, 64, 2*time.Second)
		for _, c := range saturationConns {
			t.Saturation = append(t.Saturation, sweepStep{Conns: c, Result: runOnce(saturationTag(c), 100_000, c, step)})
		}
		for _, l := range loads {
			t.Steps = append(t.Steps, runOnce(fmt.Sprintf("load%d", l), l, conns, step))
		}
		if sp.webhooks {
			// The same rate and connections: postbacks and pixels, then signed Shopify deliveries.
			t.Webhooks = append(t.Webhooks, webhookStep{Traffic: "postbacks and pixels", Tag: "webhook-postback",
				Result: runOnce("webhook-postback", webhookRate, webhookConns, step)})
			runHooks := func(tag string, rate int, d time.Duration, idBase int64) loadgen.Result {
				reqs, ids := shopifyDeliveries(order, int(float64(rate)*d.Seconds()), idBase, shopCodes)
				ok := make([]bool, len(reqs))
				meter.start()
				res := loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: d, Workers: webhookConns,
					URL:     func(int) string { return base + "/integrations/shopify/" + benchStorefront },
					Request: func(i int) *loadgen.Request { return reqs[i] },
					OnReply: func(i, status int, _ string, body []byte) {
						ok[i] = status == 200 && bytes.Contains(body, []byte(`"recorded":[{`))
					},
				})
				cpu := meter.stop()
				for i, a := range ok {
					if a {
						acked[ids[i]] = true
					}
				}
				t.CPU[tag] = cpu
				fmt.Printf("    %s: %s; CPU cores: loadgen %.2f, server %.2f, postgres %.2f\n", tag, res, cpu.LoadGen, cpu.Server, cpu.Postgres)
				return res
			}
			runHooks("webhook-warmup", 200, time.Second, 7_000_000_000_000)
			t.Webhooks = append(t.Webhooks, webhookStep{Traffic: "Shopify orders/create", Tag: "webhook",
				Result: runHooks("webhook", webhookRate, step, 7_100_000_000_000)})
		}
		if sp.sweep {
			for _, c := range sweepConns {
				t.Sweep = append(t.Sweep, sweepStep{Conns: c, Result: runOnce(sweepTag(c), sweepRate, c, step)})
			}
		}
		if sp.status {
			if err := runStatusChanges(ctx, base, conn, codes, step, meter, &t); err != nil {
				srv.stop()
				return err
			}
		}
		srv.stop() // graceful: the tracker drains its queue before exiting
		rows, err := conn.Query(ctx, "select adv_order_id from conversions")
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			seen[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		t.Acked, t.Rows = len(acked), len(seen)
		for id := range acked {
			if !seen[id] {
				t.Lost++
			}
		}
		if t.Writes {
			fmt.Printf("    acknowledged %d, rows %d, lost %d\n", t.Acked, t.Rows, t.Lost)
		}
		r.Targets = append(r.Targets, t)
	}
	return nil
}
