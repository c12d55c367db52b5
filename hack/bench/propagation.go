package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/devstack"
)

type propagation struct {
	Existing      int           `json:"existing"`
	CreateAllTook time.Duration `json:"create_all_took"`
	AllReadyTook  time.Duration `json:"all_ready_took"`
	ServableTook  time.Duration `json:"servable_took"` // until all reconciled and the last code routes on the tracker
	Samples       int           `json:"samples"`
	P50, P99, Max time.Duration
	CreateP50     time.Duration `json:"create_p50"` // API round trip incl. webhook admission
	CreateP99     time.Duration `json:"create_p99"`
	ManagerRSSMiB float64       `json:"manager_rss_mib"`
	IdleCPU       float64       `json:"idle_cpu_percent"`
	SnapshotBytes int           `json:"snapshot_bytes"`
	DeltaBytes    int           `json:"delta_bytes"` // median size of a one-code delta on the route stream
	// The figures the catalogue run also reports, as its baseline.
	APIServerRSSMiB, EtcdRSSMiB, EtcdDBMiB float64
	TrackerHeapPerCode                     float64 // bytes: Go heap in use, after minus before, per existing code
	ResyncTook                             time.Duration
	CPUSeconds                             map[string]float64 // from the first create until every code was reconciled
}

var scales = []int{1_000, 100_000}

// runPropagation measures kubectl-apply-equivalent (API create) -> first
// servable postback through the real manager, route stream and tracker, with
// 1k and 100k PromoCodes already in the cluster.
func runPropagation(ctx context.Context, r *report) error {
	if err := devstack.Build(ctx, r.Root, os.Stdout); err != nil {
		return err
	}
	for _, existing := range scales {
		dir, err := os.MkdirTemp("", "promo-prop-")
		if err != nil {
			return err
		}
		p, err := propagate(ctx, r.Root, dir, existing)
		_ = os.RemoveAll(dir)
		if err != nil {
			return err
		}
		r.Propagation = append(r.Propagation, p)
	}
	return nil
}

func propagate(ctx context.Context, root, dir string, existing int) (p propagation, err error) {
	p.Existing, p.CPUSeconds = existing, map[string]float64{}
	s, err := devstack.Start(ctx, devstack.Options{Root: root, Dir: dir, Out: os.Stdout})
	if err != nil {
		return p, err
	}
	defer func() { _ = s.Stop() }()
	c := s.Client
	tracker := s.Trackers["tracker"].URL
	heap0 := metricValue(ctx, tracker, "go_memstats_heap_inuse_bytes")
	pids := map[string]int{"manager": s.Manager.Pid(), "tracker": s.Trackers["tracker"].Pid(), "kube-apiserver": childPid("kube-apiserver"), "etcd": childPid("etcd")}
	cpu0 := map[string]int64{}
	for name, pid := range pids {
		cpu0[name], _ = cpuTicks(pid)
	}
	const offers = 1000
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}); err != nil {
		return p, err
	}
	fmt.Printf("==> creating %d offers and %d promo codes\n", offers, existing)
	start := time.Now()
	if err := parallel(16, offers, func(i int) error { return c.Create(ctx, benchOffer(i)) }); err != nil {
		return p, err
	}
	if err := parallel(32, existing, func(i int) error { return c.Create(ctx, benchCode(fmt.Sprintf("S%d", i), i)) }); err != nil {
		return p, err
	}
	p.CreateAllTook = time.Since(start)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if err := s.WaitReconciled(wctx); err != nil {
		return p, err
	}
	p.AllReadyTook = time.Since(start)
	for name, pid := range pids {
		t, _ := cpuTicks(pid)
		p.CPUSeconds[name] = float64(t-cpu0[name]) / 100
	}
	fmt.Printf("    created in %s, all reconciled after %s\n", p.CreateAllTook.Round(time.Millisecond), p.AllReadyTook.Round(time.Millisecond))
	if err := devstack.WaitServable(wctx, tracker, fmt.Sprintf("S%d", existing-1), 0); err != nil {
		return p, err
	}
	p.ServableTook = time.Since(start)
	p.APIServerRSSMiB, p.EtcdRSSMiB, p.EtcdDBMiB = controlPlaneMemory(pids["kube-apiserver"], pids["etcd"])
	runtimeGC(ctx, tracker)
	p.TrackerHeapPerCode = (metricValue(ctx, tracker, "go_memstats_heap_inuse_bytes") - heap0) / float64(existing)
	if p.ResyncTook, _, err = measureResync(ctx, s, existing); err != nil {
		return p, err
	}

	stopWatch := watchDeltas(ctx, s.RouteURL, s.RouteToken)
	const samples = 200
	var lat, create []time.Duration
	for i := range samples {
		code := fmt.Sprintf("PROP%d", i)
		t0 := time.Now()
		if err := c.Create(ctx, benchCode(code, existing+i)); err != nil {
			return p, err
		}
		create = append(create, time.Since(t0))
		for {
			if ok, _, _ := devstack.Servable(ctx, tracker, code, 0); ok {
				break
			}
			if time.Since(t0) > time.Minute {
				return p, fmt.Errorf("%s not servable after a minute", code)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	if sizes := stopWatch(); len(sizes) > 0 {
		slices.Sort(sizes)
		p.DeltaBytes = sizes[len(sizes)/2]
	}
	slices.Sort(lat)
	slices.Sort(create)
	p.Samples = samples
	p.P50, p.P99, p.Max = lat[samples/2], lat[samples*99/100], lat[samples-1]
	p.CreateP50, p.CreateP99 = create[samples/2], create[samples*99/100]

	// Idle: let the probes' own reconciles finish, then measure 30 s in which
	// nothing changes.
	pid := s.Manager.Pid()
	time.Sleep(5 * time.Second)
	idle0, _ := cpuTicks(pid)
	time.Sleep(30 * time.Second)
	idle1, _ := cpuTicks(pid)
	p.IdleCPU = float64(idle1-idle0) / 100 / 30 * 100 // ticks (1/100 s) over 30 s, in percent of one core
	p.ManagerRSSMiB = rssMiB(pid)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.RouteURL+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+s.RouteToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		p.SnapshotBytes = len(b)
	}
	fmt.Printf("    apply->servable p50 %s p99 %s max %s; manager RSS %.0f MiB, idle CPU %.1f%%\n", p.P50, p.P99, p.Max, p.ManagerRSSMiB, p.IdleCPU)
	return p, nil
}

// watchDeltas reads the route stream (as a tracker does) and records the size
// of every delta line; stop ends the stream and returns the sizes.
func watchDeltas(ctx context.Context, routeURL, token string) func() []int {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var sizes []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, routeURL+"/v1/routes", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		br := bufio.NewReaderSize(resp.Body, 1<<20)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			if bytes.HasPrefix(line, []byte(`{"type":"delta"`)) {
				mu.Lock()
				sizes = append(sizes, len(line))
				mu.Unlock()
			}
		}
	}()
	return func() []int {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return sizes
	}
}

func parallel(workers, n int, f func(i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func benchOffer(i int) *trackingv1alpha1.Offer {
	return &trackingv1alpha1.Offer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: fmt.Sprintf("offer%d", i)},
		Spec: trackingv1alpha1.OfferSpec{ID: int64(100000 + i), Currency: "USD",
			Tracking: trackingv1alpha1.Tracking{PromoCodes: trackingv1alpha1.PromoCodeTracking{Enabled: true}},
			Goals: []trackingv1alpha1.Goal{{ID: 1, Alias: "sale", Default: true, Status: "approved",
				Payout: trackingv1alpha1.Money{Percent: ptr.To("10")}, Revenue: trackingv1alpha1.Money{Fixed: ptr.To("8.00")}}}},
	}
}

func benchCode(code string, i int) *trackingv1alpha1.PromoCode {
	return &trackingv1alpha1.PromoCode{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: strings.ToLower(code)},
		Spec: trackingv1alpha1.PromoCodeSpec{Code: code, AffiliateID: int64(i%5000 + 1),
			OfferRef: trackingv1alpha1.LocalOfferReference{Name: fmt.Sprintf("offer%d", i%1000)}},
	}
}

func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
