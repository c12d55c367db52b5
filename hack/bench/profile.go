package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"promocodes.dev/promo-operator/internal/devstack"
)

// profileWindow is how long the catalogue's CPU profiles run from the first
// import: about the import of a million codes.
const profileWindow = 90 * time.Second

// editProfileWindow is shorter than the 200 edits take at any scale.
const editProfileWindow = 20 * time.Second

// profiler takes pprof profiles of the stack's processes (the manager's
// --pprof-bind-address, the API server's /debug/pprof as the admin user)
// into a directory of its own, and prints the top of each: what bounds a
// figure, measured in the run that produced it.
type profiler struct {
	ctx                 context.Context
	dir                 string
	kubectl, kubeconfig string
	wg                  sync.WaitGroup
	errs                chan error
}

func newProfiler(ctx context.Context, s *devstack.Stack) *profiler {
	dir := filepath.Join(os.TempDir(), "promo-bench-profiles-"+time.Now().UTC().Format("20060102T150405"))
	p := &profiler{ctx: ctx, dir: dir, kubectl: s.Bin("k8s/kubectl"), kubeconfig: s.Kubeconfig, errs: make(chan error, 8)}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Println("    profiles: ", err)
	}
	return p
}

// cpu starts a CPU profile of base's /debug/pprof for d, in the background
// (base "" is the API server).
func (p *profiler) cpu(name, base string, d time.Duration) {
	p.fetch(name+"-cpu", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
}

// heap takes a heap profile (in-use space) of base now.
func (p *profiler) heap(name, base string) {
	p.fetch(name+"-heap", base+"/debug/pprof/heap?gc=1")
}

func (p *profiler) fetch(name, url string) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		b, err := p.get(url)
		if err != nil {
			p.errs <- fmt.Errorf("%s: %w", name, err)
			return
		}
		path := filepath.Join(p.dir, name+".pprof")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			p.errs <- err
			return
		}
		order := "-cum" // CPU: where the time goes, callers included
		if strings.HasSuffix(name, "-heap") {
			order = "-flat" // heap: who holds the bytes
		}
		top, _ := exec.CommandContext(p.ctx, "go", "tool", "pprof", "-top", order, "-nodecount=30", path).Output()
		fmt.Printf("    profile %s (%s):\n%s\n", name, path, top)
	}()
}

// get reads url: a loopback pprof endpoint over plain HTTP, or a path of the
// API server (starting with /) through kubectl as the stack's admin user.
func (p *profiler) get(url string) ([]byte, error) {
	if strings.HasPrefix(url, "/") {
		out, err := exec.CommandContext(p.ctx, p.kubectl, "--kubeconfig", p.kubeconfig, "get", "--raw", url).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return out, err
	}
	req, _ := http.NewRequestWithContext(p.ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	return b, err
}

// wait waits for every profile and reports the ones that failed (a profile
// is evidence for the report's prose, not a figure: failures do not fail
// the run).
func (p *profiler) wait() {
	p.wg.Wait()
	for {
		select {
		case err := <-p.errs:
			fmt.Println("    profile failed:", err)
		default:
			return
		}
	}
}

// samples yields each sample line of the API server's /metrics with its value.
func (p *profiler) samples(yield func(line string, v float64)) error {
	b, err := p.get("/metrics")
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(line, "#") {
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			yield(line, v)
		}
	}
	return nil
}

// setRequests counts the API server's requests on PromoCodeSets by verb and
// subresource ("PATCH status", "APPLY", "LIST"...), from its /metrics.
func (p *profiler) setRequests() map[string]float64 {
	out := map[string]float64{}
	err := p.samples(func(line string, v float64) {
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="promocodesets"`) {
			return
		}
		label := func(k string) string {
			_, v, ok := strings.Cut(line, k+`="`)
			if !ok {
				return ""
			}
			v, _, _ = strings.Cut(v, `"`)
			return v
		}
		out[strings.TrimSpace(label("verb")+" "+label("subresource"))] += v
	})
	if err != nil {
		fmt.Println("    API server metrics:", err)
		return nil
	}
	return out
}

// webhookSeconds is the API server's time in admission webhooks so far:
// {sum of seconds, count} of apiserver_admission_webhook_admission_duration_seconds
// for the PromoCodeSet webhook, nil when it cannot be read.
func (p *profiler) webhookSeconds() []float64 {
	out := []float64{0, 0}
	err := p.samples(func(line string, v float64) {
		if !strings.Contains(line, "promocodeset") {
			return
		}
		switch {
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_sum{"):
			out[0] += v
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_count{"):
			out[1] += v
		}
	})
	if err != nil {
		return nil
	}
	return out
}
