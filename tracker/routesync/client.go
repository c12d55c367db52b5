// Package routesync is the tracker side of the manager → tracker routing-table
// sync (SPEC §5, docs/sync.md): it reads the route server's stream — a
// snapshot, then deltas and heartbeats — applies each message atomically,
// keeps the last table when the manager is unreachable, reconnects with
// exponential backoff and full jitter, and saves the table for cold starts.
package routesync

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/tracker"
)

// Message is one line of the route stream: the wire type the route server
// encodes.
type Message = routing.Message

// Client follows a route server.
type Client struct {
	URL   string // base URL of the manager's route server
	Token string // bearer token
	// CAFile, for an https URL, is the PEM bundle the route server's
	// certificate must chain to (empty: the system roots). It is read again
	// on every connection, so a rotated CA is picked up on the next reconnect.
	CAFile       string
	SnapshotFile string // where to save the table; empty: don't
	Log          *slog.Logger
	Registerer   prometheus.Registerer

	HeartbeatTimeout time.Duration // no message for this long: reconnect (default 30s)
	MinBackoff       time.Duration // default 250ms
	MaxBackoff       time.Duration // default 30s
	SaveInterval     time.Duration // at most one snapshot save per interval (default 1s)

	lastMessage atomic.Int64
	dirty       atomic.Bool
	reconnects  prometheus.Counter
	deltas      prometheus.Counter
}

func (c *Client) defaults() {
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 30 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.SaveInterval == 0 {
		c.SaveInterval = time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_tracker_sync_reconnects_total", Help: "Connections to the route server after the first."})
	c.deltas = prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_tracker_sync_deltas_total", Help: "Deltas applied."})
	last := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "promo_tracker_sync_last_message_timestamp_seconds",
		Help: "Unix time of the last message from the route server; 0 before the first. Alert on time() - this."},
		func() float64 { return float64(c.lastMessage.Load()) / 1e9 })
	if c.Registerer != nil {
		c.Registerer.MustRegister(c.reconnects, c.deltas, last)
	}
}

// Run follows the route server until ctx ends, storing each table into routes.
func (c *Client) Run(ctx context.Context, routes *tracker.Routes) error {
	c.defaults()
	saved := make(chan struct{})
	defer func() { <-saved }() // no save is left running when Run returns
	go func() { defer close(saved); c.saveLoop(ctx, routes) }()
	backoff := c.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.reconnects.Inc()
		}
		gotSnapshot, err := c.follow(ctx, routes)
		if ctx.Err() != nil {
			return nil
		}
		if gotSnapshot {
			backoff = c.MinBackoff
		}
		// Full jitter: sleep uniformly in [0, backoff).
		sleep := time.Duration(rand.Int64N(int64(backoff)) + 1)
		c.Log.Info("Route stream ended; serving the last table and reconnecting", "err", err, "retry_in", sleep.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, c.MaxBackoff)
	}
}

// follow reads one connection's stream. It reports whether a snapshot was
// applied, which resets the backoff.
func (c *Client) follow(ctx context.Context, routes *tracker.Routes) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/v1/routes", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc, err := c.httpClient()
	if err != nil {
		return false, err
	}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("route server answered %s: %s", resp.Status, b)
	}
	// A watchdog ends the connection when nothing arrives for HeartbeatTimeout.
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(c.HeartbeatTimeout)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-alive:
				t.Reset(c.HeartbeatTimeout)
			case <-t.C:
				c.Log.Info("No message from the route server within the heartbeat timeout", "timeout", c.HeartbeatTimeout)
				cancel()
				return
			}
		}
	}()
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var table *routing.Table
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return table != nil, err
		}
		select {
		case alive <- struct{}{}:
		default:
		}
		c.lastMessage.Store(time.Now().UnixNano())
		var m Message
		if err := json.Unmarshal(line, &m); err != nil {
			return table != nil, fmt.Errorf("decoding a route message: %w", err)
		}
		switch m.Type {
		case "snapshot":
			if m.Snapshot == nil {
				return table != nil, errors.New("snapshot message without a snapshot")
			}
			table = routing.NewTable(*m.Snapshot)
			c.Log.Info("Applied routing snapshot", "version", table.Version(), "codes", table.Len(), "offers", table.Offers())
		case "delta":
			if table == nil || m.Delta == nil {
				return false, errors.New("delta before snapshot")
			}
			table = table.Apply(*m.Delta)
			c.deltas.Inc()
		case "heartbeat":
			continue
		default:
			continue // newer servers may send more; ignore what we don't know
		}
		routes.Store(table)
		c.dirty.Store(true)
	}
}

// saveLoop writes the table to SnapshotFile at most once per SaveInterval,
// and waits savePace times as long as the last save took before the next:
// while a catalogue streams in, saving a table of a million codes (a second
// or more) every second would cost a core.
func (c *Client) saveLoop(ctx context.Context, routes *tracker.Routes) {
	if c.SnapshotFile == "" {
		return
	}
	t := time.NewTicker(c.SaveInterval)
	defer t.Stop()
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Now().Before(next) || !c.dirty.Swap(false) {
			continue
		}
		if table := routes.Load(); table != nil {
			start := time.Now()
			if err := tracker.SaveSnapshot(c.SnapshotFile, table); err != nil {
				c.Log.Error("Failed to save the routing snapshot", "file", c.SnapshotFile, "err", err)
				c.dirty.Store(true)
			}
			next = time.Now().Add(savePace * time.Since(start))
		}
	}
}

// savePace bounds the time spent saving to about 1/(1+savePace) of a core.
const savePace = 4

// httpClient is the client for one connection: with CAFile's roots, read now.
func (c *Client) httpClient() (*http.Client, error) {
	if c.CAFile == "" {
		return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the route server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the route server CA file %s holds no PEM certificate", c.CAFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}, nil
}
