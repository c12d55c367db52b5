// Package loadgen is an open-loop HTTP load generator whose latencies are free
// of coordinated omission: request i is due at start + i/rate, and its
// latency is measured from that due time, so a stalled server is charged for
// the requests it kept waiting, not only for the ones it answered.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	Rate     int           // requests per second offered
	Duration time.Duration // how long to offer load
	Workers  int           // concurrent connections
	// URL returns the URL of request i.
	URL func(i int) string
	// OnReply, when set, sees every reply (status, X-Promo-Status header, body).
	OnReply func(i int, status int, promoStatus string, body []byte)
}

// Result summarizes a run.
type Result struct {
	Offered  int            `json:"offered_rps"`
	Sent     int            `json:"sent"`
	Achieved float64        `json:"achieved_rps"`
	OK       int            `json:"ok"` // 200 replies
	Non200   int            `json:"non_200"`
	Errors   int            `json:"errors"` // transport errors
	P50      time.Duration  `json:"p50"`
	P99      time.Duration  `json:"p99"`
	P999     time.Duration  `json:"p999"`
	Max      time.Duration  `json:"max"`
	Statuses map[string]int `json:"statuses"`
	Elapsed  time.Duration  `json:"elapsed"`
}

func (r Result) String() string {
	return fmt.Sprintf("offered %d/s achieved %.0f/s ok %d non200 %d errors %d p50 %s p99 %s p99.9 %s max %s",
		r.Offered, r.Achieved, r.OK, r.Non200, r.Errors, r.P50, r.P99, r.P999, r.Max)
}

// Run offers cfg.Rate requests per second for cfg.Duration.
func Run(ctx context.Context, cfg Config) Result {
	total := int(float64(cfg.Rate) * cfg.Duration.Seconds())
	tr := &http.Transport{
		MaxIdleConns: cfg.Workers, MaxIdleConnsPerHost: cfg.Workers, MaxConnsPerHost: cfg.Workers,
		IdleConnTimeout: time.Minute, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	latencies := make([]time.Duration, total)
	var ok, non200, errs atomic.Int64
	var mu sync.Mutex
	statuses := map[string]int{}
	due := make(chan int, cfg.Workers)
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := range due {
				dueAt := start.Add(time.Duration(float64(i) / float64(cfg.Rate) * float64(time.Second)))
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL(i), nil)
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					latencies[i] = time.Since(dueAt)
					continue
				}
				n, _ := io.ReadFull(resp.Body, buf)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				latencies[i] = time.Since(dueAt)
				ps := resp.Header.Get("X-Promo-Status")
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					non200.Add(1)
				}
				mu.Lock()
				statuses[fmt.Sprintf("%d %s", resp.StatusCode, ps)]++
				mu.Unlock()
				if cfg.OnReply != nil {
					cfg.OnReply(i, resp.StatusCode, ps, buf[:n])
				}
			}
		}()
	}
	sent := 0
loop:
	for i := range total {
		dueAt := start.Add(time.Duration(float64(i) / float64(cfg.Rate) * float64(time.Second)))
		if d := time.Until(dueAt); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case due <- i:
			sent++
		case <-ctx.Done():
			break loop
		}
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	lat := slices.Clone(latencies[:sent])
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	r := Result{Offered: cfg.Rate, Sent: sent, Achieved: float64(sent) / elapsed.Seconds(),
		OK: int(ok.Load()), Non200: int(non200.Load()), Errors: int(errs.Load()), Statuses: statuses, Elapsed: elapsed,
		P50: pct(0.50), P99: pct(0.99), P999: pct(0.999)}
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r
}
