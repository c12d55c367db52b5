package routeserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

var (
	k8s      client.Client
	base     string
	mgrCache cache.Cache
	mgrCtx   context.Context
)

const token = "test-token"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	env := &envtest.Environment{BinaryAssetsDirectory: filepath.Join("..", "..", "bin", "k8s"), CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, NewCache: kube.NewCache,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {Transform: kube.HashSecretData}}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgrCache, mgrCtx, testMgr = mgr.GetCache(), ctx, mgr
	if err := kube.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := kube.SetupStorefrontIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, _ := freeAddr()
	base = "http://" + l
	logs.Reset()
	ctrl.SetLogger(capturedLogger())
	testServer = &Server{Addr: l, Token: token, Cache: mgr.GetCache(), SecretReader: mgr.GetAPIReader(), Log: capturedLogger(), Heartbeat: 200 * time.Millisecond}
	if err := mgr.Add(testServer); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = mgr.Start(ctx) }()
	return m.Run()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func offer(ns, name string, id int64, enabled bool) *trackingv1alpha1.Offer {
	return fixtures.Offer(ns, name, id, enabled)
}

func code(ns, name, c, offer string, affiliate int64) *trackingv1alpha1.PromoCode {
	return fixtures.PromoCode(ns, name, c, offer, affiliate)
}

// stream reads the route stream line by line in the background, so a read
// has a deadline (next fails after readTimeout instead of hanging).
type stream struct {
	lines chan []byte
	err   error // set before lines is closed
	resp  *http.Response
}

const readTimeout = 15 * time.Second

func newStream(resp *http.Response) *stream {
	s := &stream{lines: make(chan []byte, 16), resp: resp}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			s.lines <- append([]byte(nil), sc.Bytes()...)
		}
		s.err = sc.Err()
		close(s.lines)
	}()
	return s
}

func connect(t *testing.T) *stream { return connectTo(t, base) }

func connectTo(t *testing.T, base string) *stream {
	t.Helper()
	var s *stream
	poll.Until(t, 30*time.Second, func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/routes", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, fmt.Sprintf("route server not serving: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			return false, fmt.Sprintf("route server not serving: %s", resp.Status)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		s = newStream(resp)
		return true, ""
	})
	return s
}

// next returns the next non-heartbeat message, failing after readTimeout.
func (s *stream) next(t *testing.T) Message {
	t.Helper()
	timeout := time.NewTimer(readTimeout)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended: %v", s.err)
			}
			var m Message
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatal(err)
			}
			if m.Type != "heartbeat" {
				return m
			}
		case <-timeout.C:
			t.Fatalf("no message within %s", readTimeout)
		}
	}
}

func mustCreate(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRefusesWithoutToken(t *testing.T) {
	connect(t) // serving
	for _, h := range []string{"", "Bearer wrong", "Bearer " + token + "x"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/snapshot", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%q: %d", h, resp.StatusCode)
		}
	}
}

func TestSnapshotThenDeltas(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "routes"}}
	mustCreate(t, ns, offer("routes", "summer", 7, true), code("routes", "p1", "PROMO22", "summer", 42))
	// Wait until the table routes the code (its group and its offer: the two
	// come from separate informers), then open a stream.
	var s *stream
	var snap Message
	poll.Until(t, 30*time.Second, func() (bool, string) {
		s = connect(t)
		snap = s.next(t)
		if snap.Type == "snapshot" && routes(routing.NewTable(*snap.Snapshot), "PROMO22") {
			return true, ""
		}
		_ = s.resp.Body.Close()
		return false, fmt.Sprintf("snapshot never had PROMO22: %+v", snap)
	})
	table := routing.NewTable(*snap.Snapshot)
	if table.Offer("routes/summer") == nil || !table.Offer("routes/summer").Enabled {
		t.Fatalf("offer missing or disabled in snapshot")
	}

	// A new code: a delta with that group only.
	mustCreate(t, code("routes", "p2", "Summer1", "summer", 42))
	d := s.next(t)
	if d.Type != "delta" || len(d.Delta.Codes) != 1 || d.Delta.Codes[0].Folded != "SUMMER1" || len(d.Delta.Offers) != 0 {
		t.Fatalf("delta %+v", d.Delta)
	}
	if d.Version == snap.Version || d.Delta.Version != d.Version {
		t.Fatalf("versions: snapshot %s delta %s", snap.Version, d.Version)
	}
	table = table.Apply(*d.Delta)

	// Disabling the offer: a delta with the offer, disabled.
	var o trackingv1alpha1.Offer
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "routes", Name: "summer"}, &o); err != nil {
		t.Fatal(err)
	}
	o.Spec.Tracking.PromoCodes.Enabled = false
	if err := k8s.Update(ctx, &o); err != nil {
		t.Fatal(err)
	}
	d = s.next(t)
	if len(d.Delta.Offers) != 1 || d.Delta.Offers[0].Enabled || len(d.Delta.Codes) != 0 {
		t.Fatalf("offer delta %+v", d.Delta)
	}
	table = table.Apply(*d.Delta)
	if _, out := table.Lookup(&routing.Query{Code: "promo22", At: time.Now()}); out != routing.CodeNotActive {
		t.Fatalf("after disabling: %s", out)
	}

	// Deleting a code: its group is published empty.
	if err := k8s.Delete(ctx, code("routes", "p2", "Summer1", "summer", 42)); err != nil {
		t.Fatal(err)
	}
	d = s.next(t)
	if len(d.Delta.Codes) != 1 || d.Delta.Codes[0].Folded != "SUMMER1" || len(d.Delta.Codes[0].Entries) != 0 {
		t.Fatalf("delete delta %+v", d.Delta)
	}

	// A token secret: the offer is republished with the token's hash.
	o = trackingv1alpha1.Offer{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "routes", Name: "summer"}, &o); err != nil {
		t.Fatal(err)
	}
	o.Spec.Tracking.PromoCodes.Enabled = true
	o.Spec.Tracking.TokenSecretRef = &trackingv1alpha1.SecretKeyRef{Name: "tok", Key: "token"}
	if err := k8s.Update(ctx, &o); err != nil {
		t.Fatal(err)
	}
	// Its Secret is missing, so it stays disabled: that changes nothing on the
	// wire, and the next delta is the Secret's.
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "routes", Name: "tok"}, StringData: map[string]string{"token": "s3cret"}})
	d = s.next(t)
	if len(d.Delta.Offers) != 1 || !d.Delta.Offers[0].Enabled {
		t.Fatalf("token delta %+v", d.Delta)
	}
	off := d.Delta.Offers[0]
	if !off.CheckToken("s3cret") || off.CheckToken("wrong") {
		t.Fatal("the table must carry the token's hash")
	}
	raw, _ := json.Marshal(d)
	if strings.Contains(string(raw), "s3cret") {
		t.Fatal("the raw token must never be on the wire")
	}
}

// snapshotWith connects until the snapshot routes folded: its group and the
// offers the group points at. The code and offer informers are separate, so a
// group can be published a delta before its offer; a test that waited for the
// group alone would then see that offer's delta as a surprise.
func snapshotWith(t *testing.T, base, folded string) (*stream, *routing.Table) {
	t.Helper()
	var s *stream
	var tb *routing.Table
	poll.Until(t, 30*time.Second, func() (bool, string) {
		s = connectTo(t, base)
		if m := s.next(t); m.Type == "snapshot" && routes(routing.NewTable(*m.Snapshot), folded) {
			tb = routing.NewTable(*m.Snapshot)
			return true, ""
		}
		_ = s.resp.Body.Close()
		return false, "no snapshot with " + folded
	})
	return s, tb
}

func routes(tb *routing.Table, folded string) bool {
	group := tb.Group(folded)
	for _, e := range group {
		if tb.Offer(e.OfferRef) == nil {
			return false
		}
	}
	return len(group) > 0
}

func folds(d *routing.Delta) []string {
	var out []string
	for _, g := range d.Codes {
		out = append(out, g.Folded)
	}
	return out
}

func TestUnchangedGroupsAreNotPublished(t *testing.T) {
	ctx := context.Background()
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}}, offer("quiet", "o", 70, true), code("quiet", "q1", "QUIET1", "o", 1))
	s, _ := snapshotWith(t, base, "QUIET1")

	// A change that is not the routing's (a label here; a status write in a
	// cluster) recompiles QUIET1's group, finds it equal and publishes nothing,
	var pc trackingv1alpha1.PromoCode
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "quiet", Name: "q1"}, &pc); err != nil {
		t.Fatal(err)
	}
	pc.Labels = map[string]string{"team": "growth"}
	if err := k8s.Update(ctx, &pc); err != nil {
		t.Fatal(err)
	}
	// so the next delta is the next real change alone.
	mustCreate(t, code("quiet", "q2", "QUIET2", "o", 1))
	if d := s.next(t); !slices.Equal(folds(d.Delta), []string{"QUIET2"}) || len(d.Delta.Offers) != 0 {
		t.Fatalf("delta %v %+v, want QUIET2 only", folds(d.Delta), d.Delta.Offers)
	}
}

func TestLoneChangeIsPublishedAtOnce(t *testing.T) {
	// A server that publishes at most once an hour still publishes the first
	// change at once: only changes following a delta wait for the interval.
	// Everything it starts with is in the shared cache first (the main server
	// has it), so its start publishes nothing and the interval is unused.
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lone"}}, offer("lone", "o", 71, true), code("lone", "l1", "LONE1", "o", 1))
	main, _ := snapshotWith(t, base, "LONE1")
	_ = main.resp.Body.Close()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Addr: addr, Token: token, Cache: mgrCache, Log: ctrl.Log, Interval: time.Hour, Heartbeat: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(mgrCtx)
	defer cancel()
	go func() { _ = srv.Start(ctx) }()
	s, _ := snapshotWith(t, "http://"+addr, "LONE1")
	msgs := make(chan Message, 16)
	go func() {
		defer close(msgs)
		for line := range s.lines {
			var m Message
			if json.Unmarshal(line, &m) == nil && m.Type == "delta" {
				msgs <- m
			}
		}
	}()
	mustCreate(t, code("lone", "l2", "LONE2", "o", 1))
	select {
	case m := <-msgs:
		if !slices.Equal(folds(m.Delta), []string{"LONE2"}) {
			t.Fatalf("first delta %v", folds(m.Delta))
		}
	case <-time.After(time.Minute):
		t.Fatal("the first change was held back")
	}
	mustCreate(t, code("lone", "l3", "LONE3", "o", 1))
	select {
	case m := <-msgs:
		t.Fatalf("a change right after a delta must wait for the interval, got %v", folds(m.Delta))
	case <-time.After(time.Second):
	}
}

// TestReadyCheck: the manager's /readyz check fails until the caches synced
// and the first full table was built, then passes.
func TestReadyCheck(t *testing.T) {
	l, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l, Token: token, Cache: mgrCache, Log: ctrl.Log}
	if err := s.ReadyCheck(nil); err == nil {
		t.Fatal("ready before Start")
	}
	ctx, cancel := context.WithCancel(mgrCtx)
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("no table after 30s")
	}
	if err := s.ReadyCheck(nil); err != nil {
		t.Fatalf("after the first table: %v", err)
	}
}
