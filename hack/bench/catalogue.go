package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/routing"
)

// catalogue is the 1M-code figures of issue 16: PromoCodeSets imported with
// kubectl promo, until every code is servable on a tracker.
type catalogue struct {
	Codes, Sets, Offers int
	ImportTook          time.Duration // every kubectl promo import, one per offer, back to back
	ServableTook        time.Duration // from the first import until the tracker's table holds every code
	SetsReadyTook       time.Duration // until every set reports status.codes for its generation
	Imports             []importTimes
	SetRequests         map[string]float64 // API server requests on PromoCodeSets during the import, by "VERB subresource"
	ValidateTook        time.Duration      // kubectl promo import --dry-run=client of one offer's file (validation and planning alone)
	APIServerRSSMiB     float64
	EtcdRSSMiB          float64
	EtcdDBMiB           float64
	ManagerRSSMiB       float64
	TrackerHeapPerCode  float64 // bytes: Go heap in use, after minus before, per code
	TrackerRSSPerCode   float64
	SnapshotBytes       int
	ResyncTook          time.Duration // GET /v1/snapshot, decode, build the table: what a tracker does to resync
	EditSamples         int
	EditP50, EditP99    time.Duration // one entry's code changed in a 5,000-entry set -> servable
	EditMax             time.Duration
	EditAnsweredP50     time.Duration // the PATCH answered (the rest is the watch, the manager, the route stream and the tracker)
	EditAnsweredP99     time.Duration
	FullEditP50         time.Duration // the same edits in sets of 5,000 entries (the SPEC's maximum)
	FullEditP99         time.Duration
	FullEditAnsweredP50 time.Duration
	FullEditAnsweredP99 time.Duration
	EditWebhookMean     time.Duration      // the API server's mean time in the PromoCodeSet validating webhook during the edits
	CPUSeconds          map[string]float64 // during import+servable: manager, kube-apiserver, etcd, tracker
}

const (
	catalogueOffers  = 20
	catalogueSetSize = trackingv1alpha1.MaxPromoCodeSetEntries
	catalogueNS      = "catalogue"
)

// runCatalogue measures n codes (n/5000 sets over 20 offers) imported by the
// real plugin into the whole local stack.
func runCatalogue(ctx context.Context, r *report, n int) error {
	if err := devstack.Build(ctx, r.Root, os.Stdout); err != nil {
		return err
	}
	plugin := filepath.Join(r.Root, "bin", "kubectl-promo")
	if _, err := run(ctx, r.Root, nil, "go", "build", "-o", plugin, "./cmd/kubectl-promo"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "promo-catalogue-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := devstack.Start(ctx, devstack.Options{Root: r.Root, Dir: dir, Out: os.Stdout, ManagerPprof: true})
	if err != nil {
		return err
	}
	defer func() { _ = s.Stop() }()
	c := s.Client
	cat := catalogue{Codes: n, Offers: catalogueOffers, CPUSeconds: map[string]float64{}}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: catalogueNS}}); err != nil {
		return err
	}
	for i := range catalogueOffers {
		o := benchOffer(i)
		o.Namespace, o.Spec.ID = catalogueNS, int64(500_000+i)
		if err := c.Create(ctx, o); err != nil {
			return err
		}
	}
	// One CSV per offer: n/20 codes each, C0000000.., affiliates spread.
	perOffer := n / catalogueOffers
	files := make([]string, catalogueOffers)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("offer%d.csv", i))
		f, err := os.Create(files[i])
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		fmt.Fprintln(w, "code,affiliate_id")
		for j := range perOffer {
			k := i*perOffer + j
			fmt.Fprintf(w, "C%07d,%d\n", k, k%50_000+1)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		_ = f.Close()
	}
	// The plugin's cache (kubectl's --cache-dir) lives and dies with the run.
	kube := []string{"--kubeconfig", s.Kubeconfig, "-n", catalogueNS, "--cache-dir", filepath.Join(dir, "kubectl-cache")}

	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, plugin, append([]string{"import", files[0], "--offer", "offer0", "--dry-run=client", "-o", "yaml"}, kube...)...).Output(); err != nil {
		return fmt.Errorf("dry run: %w", err)
	} else if len(out) == 0 {
		return fmt.Errorf("dry run printed nothing")
	}
	cat.ValidateTook = time.Since(t0)

	tracker := s.Trackers["tracker"]
	heap0, rss0 := metricValue(ctx, tracker.URL, "go_memstats_heap_inuse_bytes"), rssMiB(tracker.Pid())
	pids := map[string]int{"manager": s.Manager.Pid(), "tracker": tracker.Pid(), "kube-apiserver": childPid("kube-apiserver"), "etcd": childPid("etcd")}
	cpu0 := map[string]int64{}
	for name, pid := range pids {
		cpu0[name], _ = cpuTicks(pid)
	}
	fmt.Printf("==> kubectl promo import: %d codes over %d offers\n", n, catalogueOffers)
	profiles := newProfiler(ctx, s)
	profiles.cpu("manager", s.ManagerPprofURL, profileWindow)
	profiles.cpu("kube-apiserver", "", profileWindow)
	req0 := profiles.setRequests()
	start := time.Now()
	for i, f := range files {
		cmd := exec.CommandContext(ctx, plugin, append([]string{"import", f, "--offer", fmt.Sprintf("offer%d", i)}, kube...)...)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s: %w\n%s", f, err, out)
		}
		cat.Imports = append(cat.Imports, importTimes{Took: time.Since(t0), Preflight: tookAfter(out, "checked against every code in the cluster in ")})
	}
	first, last := cat.Imports[0], cat.Imports[len(cat.Imports)-1]
	fmt.Printf("    first import %s (preflight %s), last %s (preflight %s against %d codes)\n",
		first.Took.Round(time.Millisecond), first.Preflight, last.Took.Round(time.Millisecond), last.Preflight, n-perOffer)
	cat.ImportTook = time.Since(start)
	fmt.Printf("    imported in %s\n", cat.ImportTook.Round(time.Millisecond))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	for metricValue(wctx, tracker.URL, "promo_tracker_table_codes") < float64(n) {
		if wctx.Err() != nil {
			return fmt.Errorf("the tracker's table never held %d codes", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cat.ServableTook = time.Since(start)
	for name, pid := range pids {
		t, _ := cpuTicks(pid)
		cat.CPUSeconds[name] = float64(t-cpu0[name]) / 100
	}
	// Spot-check servability through the tracker's HTTP API.
	for range 200 {
		k := rand.IntN(n)
		if ok, rep, err := devstack.Servable(wctx, tracker.URL, fmt.Sprintf("C%07d", k), int64(500_000+k/perOffer)); !ok {
			return fmt.Errorf("C%07d not servable: %+v %v", k, rep, err)
		}
	}
	fmt.Printf("    every code servable after %s\n", cat.ServableTook.Round(time.Millisecond))
	for {
		var sets trackingv1alpha1.PromoCodeSetList
		if err := c.List(wctx, &sets, client.InNamespace(catalogueNS)); err != nil {
			return err
		}
		cat.Sets = len(sets.Items)
		done := true
		for _, set := range sets.Items {
			done = done && set.Status.ObservedGeneration == set.Generation && int(set.Status.Codes) == len(set.Spec.Codes)
		}
		if done {
			break
		}
		if wctx.Err() != nil {
			return fmt.Errorf("sets never all reconciled")
		}
		time.Sleep(2 * time.Second) // a list of every set is the whole catalogue
	}
	cat.SetsReadyTook = time.Since(start)
	cat.SetRequests = map[string]float64{}
	for k, v := range profiles.setRequests() {
		if d := v - req0[k]; d > 0 {
			cat.SetRequests[k] = d
		}
	}
	fmt.Printf("    API server requests on PromoCodeSets during the import, %d sets: %v\n", cat.Sets, cat.SetRequests)

	profiles.heap("manager", s.ManagerPprofURL)
	profiles.wait()
	cat.ManagerRSSMiB = rssMiB(pids["manager"])
	cat.APIServerRSSMiB, cat.EtcdRSSMiB, cat.EtcdDBMiB = controlPlaneMemory(pids["kube-apiserver"], pids["etcd"])
	runtimeGC(ctx, tracker.URL)
	heap1, rss1 := metricValue(ctx, tracker.URL, "go_memstats_heap_inuse_bytes"), rssMiB(tracker.Pid())
	cat.TrackerHeapPerCode = (heap1 - heap0) / float64(n)
	cat.TrackerRSSPerCode = (rss1 - rss0) * (1 << 20) / float64(n)

	if cat.ResyncTook, cat.SnapshotBytes, err = measureResync(ctx, s, n); err != nil {
		return err
	}

	// 200 edits: one entry's code of one set changed, until the new code serves.
	const edits = 200
	var sets trackingv1alpha1.PromoCodeSetList
	if err := c.List(ctx, &sets, client.InNamespace(catalogueNS)); err != nil {
		return err
	}
	wh0 := profiles.webhookSeconds()
	profiles.cpu("kube-apiserver-edits", "", editProfileWindow)
	profiles.cpu("manager-edits", s.ManagerPprofURL, editProfileWindow)
	lat, answered, err := editLatencies(ctx, c, tracker.URL, sets.Items, edits, "EDIT")
	if err != nil {
		return err
	}
	profiles.wait()
	cat.EditAnsweredP50, cat.EditAnsweredP99 = answered[edits/2], answered[edits*99/100]
	if wh := profiles.webhookSeconds(); wh0 != nil && wh != nil {
		cat.EditWebhookMean = time.Duration((wh[0] - wh0[0]) / (wh[1] - wh0[1]) * float64(time.Second))
	}
	fmt.Printf("    edits answered by the API server p50 %s p99 %s; webhook mean %s\n", cat.EditAnsweredP50, cat.EditAnsweredP99, cat.EditWebhookMean)
	cat.EditSamples, cat.EditP50, cat.EditP99, cat.EditMax = edits, lat[edits/2], lat[edits*99/100], lat[edits-1]
	fmt.Printf("    one-entry edit -> servable p50 %s p99 %s; manager RSS %.0f MiB, apiserver %.0f MiB, etcd %.0f MiB (db %.0f MiB), tracker %.0f B/code heap\n",
		cat.EditP50, cat.EditP99, cat.ManagerRSSMiB, cat.APIServerRSSMiB, cat.EtcdRSSMiB, cat.EtcdDBMiB, cat.TrackerHeapPerCode)

	// The same edits on sets of the SPEC's maximum, 5,000 entries (made
	// directly, four of them on offer0, so they are not the import's).
	var full []trackingv1alpha1.PromoCodeSet
	for b := range 4 {
		set := trackingv1alpha1.PromoCodeSet{ObjectMeta: metav1.ObjectMeta{Namespace: catalogueNS, Name: fmt.Sprintf("full-%d", b)}}
		set.Spec.OfferRef.Name = "offer0"
		for j := range trackingv1alpha1.MaxPromoCodeSetEntries {
			set.Spec.Codes = append(set.Spec.Codes, trackingv1alpha1.PromoCodeSetEntry{Code: fmt.Sprintf("F%d%06d", b, j), AffiliateID: int64(1 + j)})
		}
		if err := c.Create(ctx, &set); err != nil {
			return fmt.Errorf("a set of %d entries: %w", trackingv1alpha1.MaxPromoCodeSetEntries, err)
		}
		full = append(full, set)
	}
	for metricValue(wctx, tracker.URL, "promo_tracker_table_codes") < float64(n+4*trackingv1alpha1.MaxPromoCodeSetEntries) {
		if wctx.Err() != nil {
			return fmt.Errorf("the sets of %d entries never served", trackingv1alpha1.MaxPromoCodeSetEntries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lat, answered, err = editLatencies(ctx, c, tracker.URL, full, edits, "FULL"); err != nil {
		return err
	}
	cat.FullEditP50, cat.FullEditP99, cat.FullEditAnsweredP50, cat.FullEditAnsweredP99 = lat[edits/2], lat[edits*99/100], answered[edits/2], answered[edits*99/100]
	fmt.Printf("    in sets of %d entries: edit -> servable p50 %s p99 %s (answered p50 %s p99 %s)\n", trackingv1alpha1.MaxPromoCodeSetEntries,
		cat.FullEditP50, cat.FullEditP99, cat.FullEditAnsweredP50, cat.FullEditAnsweredP99)
	r.Catalogue = append(r.Catalogue, cat)
	return nil
}

// editLatencies changes one entry's code in each of n edits, the sets taken
// in turn, and times each until the API server answered and until the new
// code serves on the tracker at base; both come back sorted.
func editLatencies(ctx context.Context, c client.Client, base string, sets []trackingv1alpha1.PromoCodeSet, n int, prefix string) (servable, answered []time.Duration, err error) {
	for i := range n {
		set := &sets[i%len(sets)]
		k := (i * 7919) % len(set.Spec.Codes)
		code := fmt.Sprintf("%s%d", prefix, i)
		var offerID int64
		for j := range catalogueOffers {
			if set.Spec.OfferRef.Name == fmt.Sprintf("offer%d", j) {
				offerID = int64(500_000 + j)
			}
		}
		patch := fmt.Sprintf(`[{"op":"test","path":"/spec/codes/%d/code","value":%q},{"op":"replace","path":"/spec/codes/%d/code","value":%q}]`,
			k, set.Spec.Codes[k].Code, k, code)
		t0 := time.Now()
		if err := c.Patch(ctx, &trackingv1alpha1.PromoCodeSet{ObjectMeta: metav1.ObjectMeta{Namespace: set.Namespace, Name: set.Name}},
			client.RawPatch(types.JSONPatchType, []byte(patch))); err != nil {
			return nil, nil, fmt.Errorf("edit %d: %w", i, err)
		}
		answered = append(answered, time.Since(t0))
		for {
			if ok, _, _ := devstack.Servable(ctx, base, code, offerID); ok {
				break
			}
			if time.Since(t0) > time.Minute {
				return nil, nil, fmt.Errorf("%s not servable after a minute", code)
			}
			time.Sleep(2 * time.Millisecond)
		}
		servable = append(servable, time.Since(t0))
		set.Spec.Codes[k].Code = code
	}
	slices.Sort(servable)
	slices.Sort(answered)
	return servable, answered, nil
}

// importTimes is one kubectl promo import: the whole command, and its
// preflight against the codes already in the cluster (as it printed it).
type importTimes struct{ Took, Preflight time.Duration }

// tookAfter finds "<prefix><duration>" in a command's output (0 when absent).
func tookAfter(out []byte, prefix string) time.Duration {
	_, rest, ok := strings.Cut(string(out), prefix)
	if !ok {
		return 0
	}
	d, _ := time.ParseDuration(strings.Fields(rest)[0])
	return d
}

// metricValue reads one unlabelled sample from a tracker's /metrics (-1 when absent).
func metricValue(ctx context.Context, base, name string) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

// runtimeGC lets the tracker's heap settle: two scrapes a second apart (the
// Go runtime collects on its own; the figure is heap in use, not RSS).
func runtimeGC(ctx context.Context, base string) {
	for range 3 {
		_ = metricValue(ctx, base, "go_memstats_heap_inuse_bytes")
		time.Sleep(time.Second)
	}
}

// childPid finds a child of this process (envtest starts the control plane)
// by its executable's name.
func childPid(name string) int {
	entries, _ := os.ReadDir("/proc")
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(b)
		open, closing := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || closing < 0 || st[open+1:closing] != name {
			continue
		}
		f := strings.Fields(st[closing+2:])
		if ppid, _ := strconv.Atoi(f[1]); ppid == me {
			return pid
		}
	}
	return 0
}

// etcdDataDir reads --data-dir from etcd's command line.
func etcdDataDir(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	args := strings.Split(string(b), "\x00")
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--data-dir="); ok {
			return v
		}
		if a == "--data-dir" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// controlPlaneMemory reads the API server's and etcd's RSS and the size of
// etcd's database file.
func controlPlaneMemory(apiserver, etcd int) (apiserverMiB, etcdMiB, dbMiB float64) {
	if st, err := os.Stat(filepath.Join(etcdDataDir(etcd), "member", "snap", "db")); err == nil {
		dbMiB = float64(st.Size()) / (1 << 20)
	}
	return rssMiB(apiserver), rssMiB(etcd), dbMiB
}

// measureResync does what a tracker does to resync: connect to the route
// stream, read its first line (the full snapshot), decode it, build the
// table, which must hold at least n codes.
func measureResync(ctx context.Context, s *devstack.Stack, n int) (time.Duration, int, error) {
	t1 := time.Now()
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, s.RouteURL+"/v1/routes", nil)
	req.Header.Set("Authorization", "Bearer "+s.RouteToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	line, err := bufio.NewReaderSize(resp.Body, 1<<20).ReadBytes('\n')
	stopStream()
	_ = resp.Body.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("route stream: %w", err)
	}
	var msg routing.Message
	if err := json.Unmarshal(line, &msg); err != nil || msg.Snapshot == nil {
		return 0, 0, fmt.Errorf("the route stream's first message is no snapshot: %v", err)
	}
	if tbl := routing.NewTable(*msg.Snapshot); tbl.Len() < n {
		return 0, 0, fmt.Errorf("snapshot holds %d codes, want %d", tbl.Len(), n)
	}
	return time.Since(t1), len(line), nil
}
