package tracker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pgProxy stands between a tracker and the test PostgreSQL; cut makes
// PostgreSQL unreachable at once (connections dropped, new ones refused).
type pgProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cutOff bool
}

// proxied returns dbURL through a new proxy.
func proxied(t *testing.T, dbURL string) (string, *pgProxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{l: l, target: u.Host}
	go p.serve()
	t.Cleanup(p.cut)
	u.Host = l.Addr().String()
	return u.String(), p
}

func (p *pgProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.cutOff {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	_ = p.l.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func startWith(t *testing.T, cfg Config) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewServer(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Routes.Store(testTable())
	e := &env{srv: srv, url: "http://" + srv.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- srv.Run(ctx, nil) }()
	t.Cleanup(func() { e.stop(t) })
	return e
}

func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadinessFollowsTheSpool: when PostgreSQL becomes unreachable, a
// tracker that can still acknowledge into its spool stays ready; without a
// spool, or with a full one, it is not. The body says why.
func TestReadinessFollowsTheSpool(t *testing.T) {
	for _, tc := range []struct {
		name       string
		spool      bool
		spoolBytes int64
		wantCode   int
		wantBody   string
		wantReply  string // of a conversion during the outage
	}{
		{name: "without spool", wantCode: 503, wantBody: "storage unreachable", wantReply: "storage_unavailable"},
		{name: "with spool", spool: true, spoolBytes: 1 << 20, wantCode: 200, wantBody: "acknowledging into the spool", wantReply: "approved"},
		{name: "spool full", spool: true, spoolBytes: 64, wantCode: 503, wantBody: "the spool takes no more rows: spool full", wantReply: "storage_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbURL, proxy := proxied(t, freshDB(t))
			cfg := DefaultConfig()
			cfg.Listen, cfg.DatabaseURL, cfg.DrainDelay = "127.0.0.1:0", dbURL, 0
			if tc.spool {
				cfg.SpoolDir, cfg.SpoolMaxBytes = t.TempDir(), tc.spoolBytes
			}
			e := startWith(t, cfg)
			if code, body := readyz(t, e.url); code != 200 || body != "ok\n" {
				t.Fatalf("before the outage: %d %q", code, body)
			}
			if _, _, r, _ := get(t, e.url, "code=PROMO22&adv_order_id=before"); r.Status != "approved" {
				t.Fatalf("before the outage: %+v", r)
			}
			proxy.cut()
			if _, _, r, _ := get(t, e.url, "code=PROMO22&adv_order_id=during"); r.Status != tc.wantReply {
				t.Fatalf("during the outage: %+v, want %s", r, tc.wantReply)
			}
			code, body := readyz(t, e.url)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("during the outage: /readyz %d %q, want %d and %q", code, body, tc.wantCode, tc.wantBody)
			}
			t.Logf("/readyz %d: %s", code, strings.TrimSpace(body))
		})
	}
}

// TestDrainOnShutdown: after the signal, /readyz is 503 "draining" at once,
// requests are still answered (and stored) for the drain delay, then the
// listener closes and Run returns.
func TestDrainOnShutdown(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen, cfg.DatabaseURL, cfg.DrainDelay = "127.0.0.1:0", freshDB(t), time.Second
	e := startWith(t, cfg)
	if code, _ := readyz(t, e.url); code != 200 {
		t.Fatalf("before: %d", code)
	}
	// A keep-alive connection, used once and idle when the drain begins.
	idle, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleReader := bufio.NewReader(idle)
	rawGet := func(path string) (*http.Response, error) {
		if _, err := fmt.Fprintf(idle, "GET %s HTTP/1.1\r\nHost: tracker\r\n\r\n", path); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(idleReader, nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := rawGet("/healthz"); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("keep-alive request before the drain: %v %v", resp, err)
	}
	signalled := time.Now()
	e.cancel()
	e.cancel = nil // stopped here, not in the cleanup
	time.Sleep(50 * time.Millisecond)
	if code, body := readyz(t, e.url); code != 503 || body != "draining: shutting down\n" {
		t.Fatalf("draining: /readyz %d %q", code, body)
	}
	resp, err := http.Get(e.url + "/track/promo?code=PROMO22&adv_order_id=while-draining")
	if err != nil {
		t.Fatalf("a request while draining: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"approved"`) {
		t.Fatalf("a request while draining: %d %s", resp.StatusCode, b)
	}
	if !resp.Close {
		t.Error("while draining, replies close the connection (clients reconnect through the Service)")
	}
	// The idle connection was not cut under a client that may be sending on
	// it: its next request is answered, and the reply closes it.
	if resp, err := rawGet("/track/promo?code=PROMO22&adv_order_id=idle-while-draining"); err != nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("a request on a connection idle when the drain began: %v %v", resp, err)
	}
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain delay")
	}
	if d := time.Since(signalled); d < cfg.DrainDelay {
		t.Fatalf("stopped %v after the signal, before the drain delay %v", d, cfg.DrainDelay)
	}
	if _, err := http.Get(e.url + "/readyz"); err == nil {
		t.Fatal("still listening after the drain and the shutdown")
	}
	db, err := pgxpool.New(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(context.Background(), "select count(*) from conversions where adv_order_id in ('while-draining', 'idle-while-draining')").Scan(&n); err != nil || n != 2 {
		t.Fatalf("the requests answered while draining stored %d times (%v)", n, err)
	}
}
