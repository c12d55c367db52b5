package tracker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a tracker.
type Config struct {
	Listen            string
	DatabaseURL       string
	SnapshotFile      string
	QueueSize         int
	BatchMax          int
	Writers           int
	MaxConns          int32
	TrustForwardedFor bool
	// DrainDelay: on shutdown, /readyz answers 503 "draining" at once and
	// requests are still served this long (keep-alives off), while the
	// endpoints drop the pod; then the graceful shutdown.
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	// SpoolDir, when set, holds conversions accepted while PostgreSQL is
	// unreachable (fsynced before the reply), replayed when it is back.
	SpoolDir      string
	SpoolMaxBytes int64
}

// DefaultConfig returns the defaults of the tracker's flags.
func DefaultConfig() Config {
	return Config{Listen: ":8080", QueueSize: 20000, BatchMax: 1000, Writers: 1, MaxConns: 16, DrainDelay: 5 * time.Second, ShutdownTimeout: 30 * time.Second,
		SpoolMaxBytes: 1 << 30}
}

// Syncer keeps Routes up to date until ctx ends (tracker/sync).
type Syncer func(ctx context.Context, routes *Routes) error

// Server is a running tracker: HTTP, the routing table, the batching writer.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	Routes   *Routes
	Metrics  *Metrics
	Registry *prometheus.Registry
	writer   *Writer
	spool    *Spool
	http     *http.Server
	listener net.Listener
	draining atomic.Bool
}

// NewServer connects to PostgreSQL, applies migrations, loads the snapshot
// file when there is one, and listens.
func NewServer(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the database URL: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	s := &Server{cfg: cfg, log: log, pool: pool, Registry: prometheus.NewRegistry()}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.Metrics = NewMetrics(s.Registry)
	s.Routes = NewRoutes(s.Metrics)
	if applied, err := Migrate(ctx, pool); err != nil {
		// Storage may come later: serve not-ready and retry in Run.
		log.Error("Failed to apply migrations; will retry", "err", err)
	} else if len(applied) > 0 {
		log.Info("Applied migrations", "versions", applied)
	}
	if cfg.SnapshotFile != "" {
		switch t, err := LoadSnapshot(cfg.SnapshotFile); {
		case err == nil:
			s.Routes.Store(t)
			log.Info("Loaded routing table from snapshot file", "file", cfg.SnapshotFile, "version", t.Version(), "codes", t.Len())
		case errors.Is(err, fs.ErrNotExist):
		default:
			log.Error("Failed to load snapshot file", "file", cfg.SnapshotFile, "err", err)
		}
	}
	s.writer = NewWriter(pool, cfg.QueueSize, cfg.BatchMax, s.Metrics)
	if cfg.SpoolDir != "" {
		if s.spool, err = OpenSpool(cfg.SpoolDir, cfg.SpoolMaxBytes); err != nil {
			pool.Close()
			return nil, fmt.Errorf("opening the spool: %w", err)
		}
		s.writer.WithSpool(s.spool)
		s.Metrics.SpoolRows.Set(float64(s.spool.Rows()))
		if n := s.spool.Rows(); n > 0 {
			log.Info("Spooled conversions wait for replay", "rows", n, "dir", cfg.SpoolDir)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/track/promo", &Handler{Routes: s.Routes, Writer: s.writer, Metrics: s.Metrics, Log: log, TrustForwardedFor: cfg.TrustForwardedFor})
	shop := NewShopHandler(s.Routes, s.writer, s.Metrics, log, cfg.TrustForwardedFor)
	mux.Handle("/integrations/shopify/{namespace}/{name}", shop.Shopify())
	mux.Handle("/integrations/woocommerce/{namespace}/{name}", shop.WooCommerce())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	s.http = &http.Server{
		Handler:           s.closeWhileDraining(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if s.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the address the tracker listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// readyz answers 200 when the tracker can acknowledge conversions: it has a
// routing table, and PostgreSQL answers — or, with a spool, the spool still
// takes rows (PostgreSQL blipping must not empty the Service of trackers
// that would answer every request). The body says why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	notReady := func(format string, args ...any) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, format+"\n", args...)
	}
	if s.draining.Load() {
		notReady("draining: shutting down")
		return
	}
	if s.Routes.Load() == nil {
		notReady("no routing table yet")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	err := s.pool.Ping(ctx)
	switch {
	case err == nil:
		_, _ = w.Write([]byte("ok\n"))
	case s.spool == nil:
		notReady("storage unreachable: %v", err)
	default:
		if serr := s.spool.Accepting(); serr != nil {
			notReady("storage unreachable (%v) and the spool takes no more rows: %v", err, serr)
			return
		}
		_, _ = fmt.Fprintf(w, "ok: storage unreachable (%v); acknowledging into the spool, %d rows wait for replay\n", err, s.spool.Rows())
	}
}

// Run serves until ctx ends, then shuts down gracefully: stop accepting,
// finish requests in flight, commit everything queued, close the pool.
func (s *Server) Run(ctx context.Context, syncer Syncer) error {
	s.writer.Run(s.cfg.Writers)
	errc := make(chan error, 2)
	go func() { errc <- s.http.Serve(s.listener) }()
	syncCtx, stopSync := context.WithCancel(ctx)
	defer stopSync()
	if syncer != nil {
		go func() {
			if err := syncer(syncCtx, s.Routes); err != nil && syncCtx.Err() == nil {
				s.log.Error("Route sync stopped", "err", err)
			}
		}()
	}
	go s.migrateUntilDone(syncCtx)
	stopReplay := make(chan struct{})
	replayDone := make(chan struct{})
	go func() {
		defer close(replayDone)
		s.writer.ReplayLoop(stopReplay, time.Second, func(msg string, args ...any) { s.log.Info(msg, args...) })
	}()
	var err error
	select {
	case <-ctx.Done():
		s.drain(errc, &err)
	case err = <-errc:
	}
	s.log.Info("Shutting down: finishing requests in flight and the write queue")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := s.http.Shutdown(shutdownCtx); serr != nil {
		s.log.Error("Failed to shut down HTTP cleanly", "err", serr)
	}
	s.writer.Close()
	close(stopReplay)
	<-replayDone
	if s.spool != nil {
		_ = s.spool.Close()
	}
	s.pool.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// drain turns /readyz to 503 and keeps serving for DrainDelay — a rolling
// update removes the pod from the endpoints only after it began terminating,
// so requests keep coming for a moment. Meanwhile every reply closes its
// connection (closeWhileDraining), so clients reconnect, through the
// Service, to pods that stay.
func (s *Server) drain(errc <-chan error, err *error) {
	s.draining.Store(true)
	if s.cfg.DrainDelay <= 0 {
		return
	}
	s.log.Info("Draining: /readyz answers 503, still serving", "for", s.cfg.DrainDelay)
	select {
	case <-time.After(s.cfg.DrainDelay):
	case *err = <-errc:
	}
}

// closeWhileDraining ends each connection after its reply once draining
// began. It does not close idle keep-alive connections the way
// http.Server.SetKeepAlivesEnabled(false) does: a client may be sending on an
// idle connection at that very moment, and its request would fail unanswered
// (the cluster test's rolling update saw 3 in 7,191). A connection in use
// gets its reply with "Connection: close" instead; only connections idle for
// the whole drain are closed by Shutdown.
func (s *Server) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// migrateUntilDone retries migrations when storage was down at start.
func (s *Server) migrateUntilDone(ctx context.Context) {
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		// Every migration, not just the table: a tracker started during an
		// outage against a database of the previous version must not write
		// columns that are not there yet.
		if current, err := Migrated(ctx, s.pool); err == nil && current {
			return
		}
		if _, err := Migrate(ctx, s.pool); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}
