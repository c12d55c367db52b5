// Package cluster tests promo-operator as users run it: deployed by `make
// cluster` (config/default through a local overlay, the images of `make
// images`) on a real single-node Kubernetes — kubelet, containerd, kube-proxy,
// CoreDNS and kube-router in a network namespace of the test's own. It drives
// the cluster through kubectl and the tracker's Service only.
//
// Run it with `make test-cluster` (part of `make test`), which starts the
// cluster, runs this package and removes the cluster again. Every scenario
// prints one summary line starting with "cluster:".
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/loadgen"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

const system = "promo-system"

var (
	root       string
	env        map[string]string
	db         *pgxpool.Pool
	trackerURL string
	// run tells this run's adv_order_ids from an earlier run's rows.
	run = strconv.FormatInt(time.Now().UnixNano(), 36)
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	root, _ = filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	var err error
	if env, err = readEnv(filepath.Join(root, ".cluster", "env")); err != nil {
		fmt.Fprintf(os.Stderr, "no cluster: %v (make test-cluster starts one; so does make cluster)\n", err)
		os.Exit(1)
	}
	trackerURL = env["TRACKER_URL"]
	if db, err = pgxpool.New(context.Background(), env["DATABASE_URL"]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	db.Close()
	if code != 0 {
		dumpState()
	}
	os.Exit(code)
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	for _, k := range []string{"KUBECONFIG", "TRACKER_URL", "PORTAL_URL", "PORTAL_TOKEN", "DATABASE_URL"} {
		if m[k] == "" {
			return nil, fmt.Errorf("%s lacks %s", path, k)
		}
	}
	return m, sc.Err()
}

// dumpState prints what a failure needs: pods, recent events, our logs.
func dumpState() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"logs", "-n", system, "-l", "app.kubernetes.io/name=manager", "--tail=60", "--prefix"},
		{"logs", "-n", system, "-l", "app.kubernetes.io/name=tracker", "--tail=60", "--prefix"},
	} {
		out, _ := kubectlCtx(ctx, nil, args...)
		fmt.Fprintf(os.Stderr, "--- kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
}

func kubectlCtx(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "k8s", "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env["KUBECONFIG"], "KUBECACHEDIR="+filepath.Join(root, ".cluster", "kube-cache"))
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectlCtx(ctxFor(t, 5*time.Minute), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func apply(t *testing.T, yaml string) {
	t.Helper()
	if _, err := kubectlCtx(ctxFor(t, 2*time.Minute), strings.NewReader(yaml), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// eventually polls check until it returns "" (done) or the timeout passes;
// the last non-empty answer says what was still wrong.
func eventually(t *testing.T, what string, timeout time.Duration, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < timeout {
		if last = check(); last == "" {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %s", what, timeout, last)
	return 0
}

// fresh records the namespaces this run has made: the first use of a name
// deletes what an earlier run left (the cluster outlives a run under
// KEEP_CLUSTER=1 or make cluster), later uses keep it.
var fresh sync.Map

func namespace(t *testing.T, name string) {
	t.Helper()
	if _, seen := fresh.LoadOrStore(name, true); !seen {
		kubectl(t, "delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=3m")
	}
	apply(t, fixtures.NamespaceYAML(name))
}

func track(t *testing.T, kv ...string) devstack.Reply {
	t.Helper()
	p := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		p.Set(kv[i], kv[i+1])
	}
	r, err := devstack.Track(ctxFor(t, 30*time.Second), trackerURL, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// servable waits until every tracker behind the Service routes code: the
// Service spreads connections, so it asks until n answers in a row agree.
func servable(t *testing.T, code string, offerID int64) time.Duration {
	t.Helper()
	streak := 0
	return eventually(t, "code "+code+" servable through the Service", 2*time.Minute, func() string {
		ok, r, err := devstack.Servable(ctxFor(t, 10*time.Second), trackerURL, code, offerID)
		if !ok {
			streak = 0
			return fmt.Sprintf("%+v %v", r, err)
		}
		if streak++; streak < 8 {
			return "servable, making sure every tracker agrees"
		}
		return ""
	})
}

// wantReason polls until the Service answers code with the given reason.
func wantReason(t *testing.T, what, reason string, kv ...string) {
	t.Helper()
	eventually(t, what, 2*time.Minute, func() string {
		p := url.Values{"goal_alias": {devstack.ProbeGoalAlias}}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Set(kv[i], kv[i+1])
		}
		r, err := devstack.Track(ctxFor(t, 10*time.Second), trackerURL, p)
		if err != nil || (r.Reason != reason && r.Status != reason) {
			return fmt.Sprintf("%+v %v", r, err)
		}
		return ""
	})
}

func jsonpath(t *testing.T, kind, name, ns, path string) string {
	t.Helper()
	return kubectl(t, "get", kind, name, "-n", ns, "-o", "jsonpath="+path)
}

// TestDeployedStory is the end-to-end story of test/e2e on the deployed
// product: apply, postbacks and pixels through the Service, rows in
// PostgreSQL, disable and re-enable, the webhook served from a pod refusing a
// conflicting code, and deleting a holder promoting the next claim.
func TestDeployedStory(t *testing.T) {
	const ns = "cl-story"
	namespace(t, ns)
	apply(t, fixtures.OfferYAML(ns, "story", 501, true))
	apply(t, fixtures.PromoCodeYAML(ns, "story22", "STORY22", "story", 11, ""))
	servable(t, "STORY22", 501)

	r := track(t, "code", "story22", "amount", "20", "adv_order_id", "cl-story-1-"+run)
	if r.HTTPStatus != 200 || r.Status != "approved" || r.ConversionID == "" {
		t.Fatalf("postback through the Service: %+v", r)
	}
	var ref, source, amount string
	var offer, affiliate int64
	if err := db.QueryRow(ctxFor(t, 30*time.Second), `select promo_code_ref, offer_id, affiliate_id, amount::text, source
		from conversions where id = $1`, r.ConversionID).Scan(&ref, &offer, &affiliate, &amount, &source); err != nil {
		t.Fatalf("row of conversion %s: %v", r.ConversionID, err)
	}
	if ref != ns+"/story22" || offer != 501 || affiliate != 11 || amount != "20" || source != "postback" {
		t.Fatalf("row: ref %s offer %d affiliate %d amount %s source %s", ref, offer, affiliate, amount, source)
	}

	// The portal, through its Service, shows the conversion and its code.
	req, _ := http.NewRequest(http.MethodGet, env["PORTAL_URL"]+"/api/v1/transactions?promo_code=story22", nil)
	req.Header.Set("Authorization", "Bearer "+env["PORTAL_TOKEN"])
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pbody, _ := io.ReadAll(presp.Body)
	_ = presp.Body.Close()
	if presp.StatusCode != 200 || !strings.Contains(string(pbody), r.ConversionID) || !strings.Contains(string(pbody), "STORY22") {
		t.Fatalf("portal transactions: %d %s", presp.StatusCode, pbody)
	}

	resp, err := http.Get(trackerURL + "/track/promo?code=STORY22&return=img&adv_order_id=cl-story-pixel-" + run)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("X-Promo-Status") != "approved" {
		t.Fatalf("pixel: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Promo-Status"))
	}

	apply(t, fixtures.OfferYAML(ns, "story", 501, false))
	wantReason(t, "offer disabled", "code_not_active", "code", "STORY22", "offer_id", "501")
	eventually(t, "kubectl shows Inactive", time.Minute, func() string {
		if s := jsonpath(t, "promocode", "story22", ns, "{.status.state}"); s != "Inactive" {
			return s
		}
		return ""
	})
	apply(t, fixtures.OfferYAML(ns, "story", 501, true))
	servable(t, "STORY22", 501)

	// The webhook, served by the manager pods behind their Service, refuses
	// another affiliate's code and names the holder.
	apply(t, fixtures.OfferYAML(ns, "rival", 502, true))
	out, err := kubectlCtx(ctxFor(t, time.Minute), strings.NewReader(fixtures.PromoCodeYAML(ns, "stolen", "story22", "rival", 99, "")), "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "belongs to affiliate 11") || !strings.Contains(out, ns+"/story22") {
		t.Fatalf("the webhook should refuse another affiliate's code, naming the holder: %v %s", err, out)
	}
	fmt.Printf("cluster: webhook refused a conflicting code: %s\n", strings.TrimSpace(lastLine(out)))

	// Deleting a holder promotes the next claim. The webhook refuses losing
	// claims, so the loser is created the way one gets past it — while the
	// webhook configuration is absent (a restore from backup, a GitOps sync
	// during an outage) — and the controllers stay authoritative.
	const vwc = "validatingwebhookconfiguration/promo-operator-validating-webhook-configuration"
	saved := kubectl(t, "get", vwc, "-o", "json")
	kubectl(t, "delete", vwc)
	eventually(t, "the API server drops the webhook", time.Minute, func() string {
		out, err := kubectlCtx(ctxFor(t, time.Minute), strings.NewReader(fixtures.PromoCodeYAML(ns, "probe-loser", "story22", "rival", 98, "")), "create", "--dry-run=server", "-f", "-")
		if err != nil {
			return out
		}
		return ""
	})
	apply(t, fixtures.PromoCodeYAML(ns, "next", "story22", "rival", 12, ""))
	restoreWebhook(t, saved)
	eventually(t, "the loser is Rejected", time.Minute, func() string {
		if s := jsonpath(t, "promocode", "next", ns, "{.status.state}"); s != "Rejected" {
			return s
		}
		return ""
	})
	wantReason(t, "the loser does not route", "code_not_on_offer", "code", "STORY22", "offer_id", "502")
	kubectl(t, "delete", "promocode", "story22", "-n", ns)
	eventually(t, "the next claim becomes Active", time.Minute, func() string {
		if s := jsonpath(t, "promocode", "next", ns, "{.status.state}"); s != "Active" {
			return s
		}
		return ""
	})
	servable(t, "STORY22", 502)
	if r := track(t, "code", "STORY22", "amount", "5"); r.Status != "approved" {
		t.Fatalf("postback for the promoted code: %+v", r)
	} else if err := db.QueryRow(ctxFor(t, 30*time.Second), `select affiliate_id from conversions where id = $1`, r.ConversionID).Scan(&affiliate); err != nil || affiliate != 12 {
		t.Fatalf("promoted code's conversion: affiliate %d %v", affiliate, err)
	}
	fmt.Println("cluster: story: postback, pixel, rows, disable/enable, webhook refusal, holder deleted -> next claim: ok")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// restoreWebhook puts the saved ValidatingWebhookConfiguration back and waits
// until the API server enforces it again.
func restoreWebhook(t *testing.T, saved string) {
	t.Helper()
	if _, err := kubectlCtx(ctxFor(t, time.Minute), strings.NewReader(stripServerFields(t, saved)), "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the webhook is enforced again", time.Minute, func() string {
		out, err := kubectlCtx(ctxFor(t, time.Minute), strings.NewReader(fixtures.PromoCodeYAML("cl-story", "probe-loser", "story22", "rival", 98, "")), "create", "--dry-run=server", "-f", "-")
		if err == nil {
			return "a conflicting code is still admitted"
		}
		if !strings.Contains(out, "belongs to affiliate") {
			return out
		}
		return ""
	})
}

// stripServerFields makes an object read with -o json creatable again.
func stripServerFields(t *testing.T, saved string) string {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(saved), &obj); err != nil {
		t.Fatal(err)
	}
	meta := obj["metadata"].(map[string]any)
	for _, k := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"} {
		delete(meta, k)
	}
	delete(obj, "status")
	b, _ := json.Marshal(obj)
	return string(b)
}

// load offers a steady stream of postbacks through the tracker Service, each
// with its own adv_order_id, and remembers what was acknowledged.
type load struct {
	name    string
	cancel  context.CancelFunc
	done    chan loadgen.Result
	mu      sync.Mutex
	acked   map[string]string // adv_order_id -> conversion_id
	replies map[string]int
	stored  time.Time // when every acknowledged conversion was found as a row
}

func startLoad(name, code string, rate int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{name: name, cancel: cancel, done: make(chan loadgen.Result, 1), acked: map[string]string{}, replies: map[string]int{}}
	prefix := fmt.Sprintf("cl-%s-%d-", name, time.Now().UnixNano())
	go func() {
		l.done <- loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: 30 * time.Minute, Workers: 32,
			URL: func(i int) string {
				return fmt.Sprintf("%s/track/promo?code=%s&amount=10&adv_order_id=%s%d", trackerURL, code, prefix, i)
			},
			OnReply: func(i, status int, _ string, body []byte) {
				var r devstack.Reply
				_ = json.Unmarshal(body, &r)
				l.mu.Lock()
				defer l.mu.Unlock()
				l.replies[fmt.Sprintf("%d %s", status, r.Status)]++
				if status == 200 && r.Status == "approved" {
					l.acked[fmt.Sprintf("%s%d", prefix, i)] = r.ConversionID
				}
			},
		})
	}()
	return l
}

// finish stops the load and checks every acknowledged conversion became its
// row (polling: a spool replays after PostgreSQL returns), then prints the
// scenario's summary line. It fails on a lost or doubled conversion.
func (l *load) finish(t *testing.T, recovered string) loadgen.Result {
	t.Helper()
	l.cancel()
	res := <-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.acked))
	for _, id := range l.acked {
		ids = append(ids, id)
	}
	var rows, distinct int
	eventually(t, l.name+": every acknowledged conversion is a row", 3*time.Minute, func() string {
		err := db.QueryRow(ctxFor(t, 30*time.Second), `select count(*), count(distinct id) from conversions where id = any($1::uuid[])`, ids).Scan(&rows, &distinct)
		if err != nil {
			return err.Error()
		}
		if distinct < len(ids) {
			return fmt.Sprintf("%d of %d acknowledged conversions stored so far", distinct, len(ids))
		}
		return ""
	})
	l.stored = time.Now()
	refused := res.Sent - len(l.acked)
	fmt.Printf("cluster: %s sent=%d acknowledged=%d rows=%d lost=%d refused=%d%s\n",
		l.name, res.Sent, len(l.acked), distinct, len(ids)-distinct, refused, recovered)
	t.Logf("%s: %s; replies %v", l.name, res, l.replies)
	if rows != distinct {
		t.Fatalf("%s: %d rows for %d conversions: doubled", l.name, rows, distinct)
	}
	if len(l.acked) < res.Sent/2 {
		t.Fatalf("%s: only %d of %d requests acknowledged", l.name, len(l.acked), res.Sent)
	}
	return res
}

// loadCode creates the Offer and code every load scenario posts to.
func loadCode(t *testing.T) string {
	t.Helper()
	const ns = "cl-load"
	namespace(t, ns)
	apply(t, fixtures.OfferYAML(ns, "load", 601, true))
	apply(t, fixtures.PromoCodeYAML(ns, "load1", "LOAD1", "load", 21, ""))
	servable(t, "LOAD1", 601)
	return "LOAD1"
}

// TestRollingUpdateUnderLoad restarts the trackers (kubectl rollout restart)
// while postbacks flow through the Service: every acknowledged conversion is
// a row, and the refused requests are counted (target: none).
func TestRollingUpdateUnderLoad(t *testing.T) {
	code := loadCode(t)
	l := startLoad("rolling-update", code, 200)
	time.Sleep(3 * time.Second) // load before the restart: the scenario, not a wait
	start := time.Now()
	kubectl(t, "rollout", "restart", "statefulset/promo-operator-tracker", "-n", system)
	kubectl(t, "rollout", "status", "statefulset/promo-operator-tracker", "-n", system, "--timeout=5m")
	took := time.Since(start)
	time.Sleep(3 * time.Second) // load after the restart
	res := l.finish(t, fmt.Sprintf(" rollout=%s", took.Round(100*time.Millisecond)))
	if refused := res.Sent - len(l.acked); refused != 0 {
		t.Errorf("rolling update: %d requests not acknowledged (target: none): %d transport errors, replies %v", refused, res.Errors, l.replies)
	}
}

// leader is the manager pod holding the controllers' lease.
func leader(t *testing.T) string {
	holder := jsonpath(t, "lease", "promo-operator.tracking.promocodes.dev", system, "{.spec.holderIdentity}")
	pod, _, _ := strings.Cut(holder, "_")
	return pod
}

// TestManagerFailover deletes the leader pod under load: another replica
// takes the lease within seconds, the webhook keeps answering, and a code
// applied during the failover becomes servable.
func TestManagerFailover(t *testing.T) {
	code := loadCode(t)
	old := ""
	eventually(t, "a leader", time.Minute, func() string {
		if old = leader(t); old == "" {
			return "no holder"
		}
		return ""
	})
	l := startLoad("manager-failover", code, 200)
	time.Sleep(2 * time.Second) // load before the fault
	start := time.Now()
	kubectl(t, "delete", "pod", old, "-n", system, "--wait=false")
	// Applied at once: the other replica's webhook must answer.
	applyStart := time.Now()
	apply(t, fixtures.PromoCodeYAML("cl-load", "failover1", "FAILOVER1", "load", 21, ""))
	admitted := time.Since(applyStart)
	var newLeader string
	elected := eventually(t, "a new leader", 2*time.Minute, func() string {
		if newLeader = leader(t); newLeader == "" || newLeader == old {
			return "lease still held by " + old
		}
		return ""
	})
	servable(t, "FAILOVER1", 601)
	servableIn := time.Since(start)
	kubectl(t, "rollout", "status", "deployment/promo-operator-controller-manager", "-n", system, "--timeout=5m")
	res := l.finish(t, fmt.Sprintf(" new_leader=%s webhook_admitted=%s code_servable=%s",
		elected.Round(100*time.Millisecond), admitted.Round(10*time.Millisecond), servableIn.Round(100*time.Millisecond)))
	if elected > 60*time.Second {
		t.Errorf("new leader after %s: the lease should move within seconds", elected)
	}
	if refused := res.Sent - len(l.acked); refused != 0 {
		t.Errorf("the manager failover refused %d postbacks (%d transport errors): trackers must not depend on the manager: %v", refused, res.Errors, l.replies)
	}
}

// spoolReplayed sums promo_tracker_spool_replayed_total over the tracker
// pods, read from each pod's /metrics.
func spoolReplayed(t *testing.T) float64 {
	t.Helper()
	var sum float64
	for _, ip := range strings.Fields(kubectl(t, "get", "pods", "-n", system, "-l", "app.kubernetes.io/name=tracker", "-o", "jsonpath={.items[*].status.podIP}")) {
		resp, err := http.Get("http://" + ip + ":8080/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "promo_tracker_spool_replayed_total "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				sum += n
			}
		}
		_ = resp.Body.Close()
	}
	return sum
}

func postgres(t *testing.T, verb string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(root, "hack", "cluster", "postgres.sh"), verb)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postgres.sh %s: %v: %s", verb, err, out)
	}
}

// TestPostgresOutage stops PostgreSQL for 10 s under load with the shipped
// tracker configuration (spool on the StatefulSet's volume): nothing
// acknowledged is lost, and the trackers stay in the Service meanwhile.
func TestPostgresOutage(t *testing.T) {
	code := loadCode(t)
	l := startLoad("postgres-outage", code, 200)
	time.Sleep(3 * time.Second) // load before the fault
	replayedBefore := spoolReplayed(t)
	postgres(t, "stop")
	stopped := time.Now()
	t.Cleanup(func() { postgres(t, "start") })
	// The outage lasts 10 s; meanwhile, every second, are the trackers Ready?
	var notReady []string
	for time.Since(stopped) < 10*time.Second {
		ready := kubectl(t, "get", "pods", "-n", system, "-l", "app.kubernetes.io/name=tracker",
			"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		for _, r := range strings.Fields(ready) {
			if !strings.HasSuffix(r, "=True") {
				notReady = append(notReady, fmt.Sprintf("%s at +%s", r, time.Since(stopped).Round(time.Second)))
			}
		}
		time.Sleep(time.Second)
	}
	postgres(t, "start")
	back := time.Now()
	time.Sleep(3 * time.Second) // load after
	res := l.finish(t, fmt.Sprintf(" outage=%s", back.Sub(stopped).Round(100*time.Millisecond)))
	replayed := spoolReplayed(t) - replayedBefore
	fmt.Printf("cluster: postgres-outage spooled-and-replayed=%.0f all-rows-stored=%s after PostgreSQL returned\n",
		replayed, l.stored.Sub(back).Round(100*time.Millisecond))
	if replayed == 0 {
		t.Errorf("no conversion went through the spool: the outage did not exercise the shipped configuration")
	}
	if len(notReady) > 0 {
		t.Errorf("trackers not Ready during the outage: %v — a tracker that can spool must stay in the Service", notReady)
	}
	if refused := res.Sent - len(l.acked); refused != 0 {
		t.Errorf("the outage refused %d postbacks (%d transport errors; the spool should take them): %v", refused, res.Errors, l.replies)
	}
}
