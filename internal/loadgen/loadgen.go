// Package loadgen is an open-loop HTTP load generator whose latencies are free
// of coordinated omission: request i is due at start + i/rate, and its
// latency is measured from that due time, so a stalled server is charged for
// the requests it kept waiting, not only for the ones it answered.
//
// The client is fasthttp's HostClient, one keep-alive connection per worker
// and no automatic retries: on two shared cores every microsecond the
// generator spends is taken from the server under test, and net/http's client
// cost about twice as much CPU per request (docs/benchmarks.md).
package loadgen

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Config is one load run.
type Config struct {
	Rate     int           // requests per second offered
	Duration time.Duration // how long to offer load
	Workers  int           // concurrent connections
	// URL returns the URL of request i.
	URL func(i int) string
	// Request, when set, gives request i's method, headers and body; URL(i)
	// is still its URI. Unset: a GET without a body. Build requests before the
	// run: the generator shares the cores with the server under test.
	Request func(i int) *Request
	// OnReply, when set, sees every reply (status, X-Promo-Status header, body).
	OnReply func(i int, status int, promoStatus string, body []byte)
}

// Request is a request other than a plain GET (a signed webhook delivery, say).
type Request struct {
	Method string
	Header []Header
	Body   []byte
}

// Header is one request header.
type Header struct{ Key, Value string }

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

// Run offers cfg.Rate requests per second for cfg.Duration. Every URL must
// name the same host.
func Run(ctx context.Context, cfg Config) Result {
	total := int(float64(cfg.Rate) * cfg.Duration.Seconds())
	hc := &fasthttp.HostClient{
		Addr:                      hostOf(cfg.URL(0)),
		MaxConns:                  cfg.Workers,
		MaxConnWaitTimeout:        30 * time.Second,
		ReadTimeout:               30 * time.Second,
		WriteTimeout:              30 * time.Second,
		MaxIdleConnDuration:       time.Minute,
		MaxIdemponentCallAttempts: 1, // a failed request is an error, never a silent retry
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
	}
	defer hc.CloseIdleConnections()

	latencies := make([]time.Duration, total)
	due := make(chan int, cfg.Workers)
	start := time.Now()
	dueAt := func(i int) time.Time {
		return start.Add(time.Duration(float64(i) / float64(cfg.Rate) * float64(time.Second)))
	}
	type tally struct {
		ok, non200, errs int
		statuses         map[string]int
	}
	tallies := make([]tally, cfg.Workers)
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[w]
			t.statuses = map[string]int{}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var key []byte
			for i := range due {
				req.SetRequestURI(cfg.URL(i))
				if cfg.Request != nil {
					r := cfg.Request(i)
					req.Header.SetMethod(r.Method)
					for _, h := range r.Header {
						req.Header.Set(h.Key, h.Value)
					}
					req.SetBodyRaw(r.Body)
				}
				err := hc.Do(req, resp)
				latencies[i] = time.Since(dueAt(i))
				if err != nil {
					t.errs++
					continue
				}
				code, ps := resp.StatusCode(), resp.Header.Peek("X-Promo-Status")
				if code == fasthttp.StatusOK {
					t.ok++
				} else {
					t.non200++
				}
				key = append(append(strconv.AppendInt(key[:0], int64(code), 10), ' '), ps...)
				t.statuses[string(key)]++ // no allocation: the map lookup converts in place
				if cfg.OnReply != nil {
					cfg.OnReply(i, code, string(ps), resp.Body())
				}
			}
		}()
	}

	// Dispatch: hand out every request that is due, then sleep until the next
	// one is. The sleep is one timer, not one per request.
	sent := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
loop:
	for sent < total {
		for now := time.Now(); sent < total && !dueAt(sent).After(now); sent++ {
			select {
			case due <- sent:
			case <-ctx.Done():
				break loop
			}
		}
		if sent == total {
			break
		}
		if d := time.Until(dueAt(sent)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		}
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)

	r := Result{Offered: cfg.Rate, Sent: sent, Achieved: float64(sent) / elapsed.Seconds(), Statuses: map[string]int{}, Elapsed: elapsed}
	for _, t := range tallies {
		r.OK += t.ok
		r.Non200 += t.non200
		r.Errors += t.errs
		for k, n := range t.statuses {
			r.Statuses[k] += n
		}
	}
	lat := slices.Clone(latencies[:sent])
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	r.P50, r.P99, r.P999 = pct(0.50), pct(0.99), pct(0.999)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Host
}
