package routesync

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/internal/testutil/poll"
	"promocodes.dev/promo-operator/tracker"
)

func snapshot(version string, codes ...string) routing.Snapshot {
	s := routing.Snapshot{Version: version, Offers: []routing.Offer{{Ref: "shop/o", ID: 7, Currency: "USD", Enabled: true,
		Goals: []routing.Goal{{ID: 1, Alias: "sale", Status: "approved"}}}}}
	for _, c := range codes {
		s.Codes = append(s.Codes, routing.CodeGroup{Folded: c, Entries: []routing.Entry{{Code: c, Ref: "shop/" + c, OfferRef: "shop/o", AffiliateID: 1}}})
	}
	return s
}

// fakeServer streams what the test pushes; each connection starts with the
// current snapshot.
type fakeServer struct {
	mu    gosync.Mutex
	snap  routing.Snapshot
	conns atomic.Int32
	down  atomic.Bool  // answer 503 to every connection attempt
	shed  atomic.Int32 // attempts answered 503
	push  chan Message
	token string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if f.down.Load() {
		f.shed.Add(1)
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	f.conns.Add(1)
	f.mu.Lock()
	snap := f.snap
	f.mu.Unlock()
	enc := json.NewEncoder(w)
	_ = enc.Encode(Message{Type: "snapshot", Version: snap.Version, Snapshot: &snap})
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case m := <-f.push:
			_ = enc.Encode(m)
			w.(http.Flusher).Flush()
		}
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, func() (bool, string) { return f(), "timed out waiting for " + what })
}

func lookup(r *tracker.Routes, code string) routing.Outcome {
	t := r.Load()
	if t == nil {
		return 255
	}
	_, out := t.Lookup(&routing.Query{Code: code, At: time.Now()})
	return out
}

func TestSnapshotDeltasReconnectAndSave(t *testing.T) {
	fs := &fakeServer{snap: snapshot("v1", "AAA"), push: make(chan Message), token: "tok"}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "snap.json")
	routes := tracker.NewRoutes(nil)
	c := &Client{URL: srv.URL, Token: "tok", SnapshotFile: file, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, SaveInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx, routes) }()

	waitFor(t, "snapshot", func() bool { return lookup(routes, "AAA") == routing.OK })
	fs.push <- Message{Type: "delta", Version: "v2", Delta: &routing.Delta{Version: "v2",
		Codes: []routing.CodeGroup{{Folded: "BBB", Entries: []routing.Entry{{Code: "bbb", Ref: "shop/bbb", OfferRef: "shop/o", AffiliateID: 2}}}, {Folded: "AAA"}}}}
	waitFor(t, "delta", func() bool {
		return lookup(routes, "bbb") == routing.OK && lookup(routes, "AAA") == routing.UnknownCode
	})
	if routes.Load().Version() != "v2" {
		t.Fatalf("version %s", routes.Load().Version())
	}
	waitFor(t, "snapshot file", func() bool {
		saved, err := tracker.LoadSnapshot(file)
		return err == nil && saved.Version() == "v2"
	})

	// The server drops the connection and refuses the next attempts: the
	// client keeps its table and keeps trying.
	fs.down.Store(true)
	srv.CloseClientConnections()
	waitFor(t, "a refused reconnect", func() bool { return fs.shed.Load() > 0 })
	if lookup(routes, "BBB") != routing.OK {
		t.Fatal("the last table must keep serving while disconnected")
	}
	// Back with a new table: the client resyncs from its snapshot.
	fs.mu.Lock()
	fs.snap = snapshot("v3", "CCC")
	fs.mu.Unlock()
	fs.down.Store(false)
	waitFor(t, "resync after reconnect", func() bool {
		return lookup(routes, "CCC") == routing.OK && lookup(routes, "BBB") == routing.UnknownCode
	})
	if fs.conns.Load() < 2 {
		t.Fatalf("connections %d", fs.conns.Load())
	}
}

func TestUnauthorizedKeepsRetrying(t *testing.T) {
	fs := &fakeServer{snap: snapshot("v1", "AAA"), push: make(chan Message), token: "right"}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	routes := tracker.NewRoutes(nil)
	c := &Client{URL: srv.URL, Token: "wrong", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = c.Run(ctx, routes)
	if routes.Load() != nil || fs.conns.Load() != 0 {
		t.Fatal("a refused client must not get a table")
	}
}

func TestHeartbeatTimeoutReconnects(t *testing.T) {
	fs := &fakeServer{snap: snapshot("v1", "AAA"), push: make(chan Message), token: "tok"}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	routes := tracker.NewRoutes(nil)
	c := &Client{URL: srv.URL, Token: "tok", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout: 100 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx, routes) }()
	// The server sends nothing after the snapshot: a silent stream is dead.
	waitFor(t, "reconnects after silence", func() bool { return fs.conns.Load() >= 3 })
	if lookup(routes, "AAA") != routing.OK {
		t.Fatal("table lost")
	}
}
