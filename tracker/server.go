package tracker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
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
	ShutdownTimeout   time.Duration
	// SpoolDir, when set, holds conversions accepted while PostgreSQL is
	// unreachable (fsynced before the reply), replayed when it is back.
	SpoolDir      string
	SpoolMaxBytes int64
}

// DefaultConfig returns the defaults of the tracker's flags.
func DefaultConfig() Config {
	return Config{Listen: ":8080", QueueSize: 20000, BatchMax: 1000, Writers: 1, MaxConns: 16, ShutdownTimeout: 30 * time.Second,
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	s.http = &http.Server{
		Handler:           mux,
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

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Routes.Load() == nil {
		http.Error(w, "no routing table yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		http.Error(w, "storage unreachable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
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
	case err = <-errc:
	}
	s.log.Info("Shutting down: draining requests and the write queue")
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

// migrateUntilDone retries migrations when storage was down at start.
func (s *Server) migrateUntilDone(ctx context.Context) {
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		var exists bool
		if err := s.pool.QueryRow(ctx, "SELECT to_regclass('conversions') IS NOT NULL").Scan(&exists); err == nil && exists {
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
