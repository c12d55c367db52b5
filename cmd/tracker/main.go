// Command tracker is promo-operator's data plane: it answers /track/promo and
// writes conversions to PostgreSQL (SPEC §3-§5).
//
//	tracker [serve] [flags]   serve (the default)
//	tracker migrate [flags]   apply the embedded migrations and exit
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"promocodes.dev/promo-operator/tracker"
	"promocodes.dev/promo-operator/tracker/routesync"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var err error
	switch cmd {
	case "serve":
		err = serve(args, log)
	case "migrate":
		err = migrate(args, log)
	default:
		err = fmt.Errorf("unknown command %q: use serve or migrate", cmd)
	}
	if err != nil {
		log.Error("Tracker failed", "err", err)
		os.Exit(1)
	}
}

func serve(args []string, log *slog.Logger) error {
	cfg := tracker.DefaultConfig()
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to serve /track/promo, /healthz, /readyz and /metrics on")
	fs.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	fs.StringVar(&cfg.SnapshotFile, "snapshot-file", "", "routing table saved here and loaded at start (serve from it while the manager is down)")
	fs.IntVar(&cfg.QueueSize, "queue-size", cfg.QueueSize, "conversions waiting for a commit before 503 storage_unavailable")
	fs.IntVar(&cfg.BatchMax, "batch-max", cfg.BatchMax, "most rows committed in one transaction")
	fs.IntVar(&cfg.Writers, "writers", cfg.Writers, "concurrent group commits; 1 makes the biggest batches (least PostgreSQL CPU per row, see docs/benchmarks.md); raise it when PostgreSQL is remote with cores to spare")
	maxConns := fs.Int("max-conns", int(cfg.MaxConns), "PostgreSQL connections")
	fs.BoolVar(&cfg.TrustForwardedFor, "trust-forwarded-for", false, "take the caller's IP from X-Forwarded-For (behind a trusted proxy only)")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "on SIGTERM, answer /readyz 503 \"draining\" and keep serving this long (keep-alives off) while endpoints drop the pod, before the graceful shutdown")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "after the drain delay, how long SIGTERM waits for requests in flight")
	fs.StringVar(&cfg.SpoolDir, "spool-dir", "", "keep conversions here (fsynced) while PostgreSQL is unreachable, replay them when it returns (empty: answer 503 instead)")
	fs.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", cfg.SpoolMaxBytes, "spool size bound; when full, 503 storage_unavailable")
	routeServer := fs.String("route-server", "", "manager route server URL, e.g. http://promo-operator-routes:8090 (empty: serve the snapshot file only)")
	routeTokenFile := fs.String("route-token-file", "", "file holding the bearer token for the route server")
	routeCAFile := fs.String("route-ca-file", "", "PEM CA bundle the https route server's certificate must chain to, read again on every reconnect (empty: the system roots)")
	debugListen := fs.String("debug-listen", "", "serve /debug/pprof on this address, e.g. 127.0.0.1:6060 (empty: off; never expose it publicly)")
	_ = fs.Parse(args)
	if cfg.DatabaseURL == "" {
		return fmt.Errorf("--database-url or $DATABASE_URL is required")
	}
	cfg.MaxConns = int32(*maxConns)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := tracker.NewServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	var syncer tracker.Syncer
	if *routeServer != "" {
		token, err := readToken(*routeTokenFile)
		if err != nil {
			return err
		}
		if u, err := url.Parse(*routeServer); err != nil || u.Scheme != "https" && u.Scheme != "http" {
			return fmt.Errorf("--route-server %q: want an http(s) URL", *routeServer)
		} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			log.Warn("The route server URL is plaintext and not loopback: it withholds Storefronts (their signing secrets) from this tracker; use https and --route-ca-file", "route_server", *routeServer)
		}
		c := &routesync.Client{URL: *routeServer, Token: token, CAFile: *routeCAFile, SnapshotFile: cfg.SnapshotFile, Log: log, Registerer: srv.Registry}
		syncer = c.Run
	}
	if *debugListen != "" {
		go servePprof(*debugListen, log)
	}
	log.Info("Tracker listening", "addr", srv.Addr(), "route_server", *routeServer)
	return srv.Run(ctx, syncer)
}

// servePprof serves the runtime profiles on a separate, private listener.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error("Debug listener stopped", "addr", addr, "err", err)
	}
}

// isLoopback: localhost or a loopback IP.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the route token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func migrate(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("migrate", flag.ExitOnError)
	url := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := tracker.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	log.Info("Migrations applied", "versions", applied)
	return nil
}
