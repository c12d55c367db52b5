// Command portal is promo-operator's read-only reports service (SPEC §7): the
// affiliate promo-code listing, the transactions API and a web page.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/portal"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	if err := run(log); err != nil {
		log.Error("Portal failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	listen := flag.String("listen", ":8081", "address to serve the API, the page, /healthz, /readyz and /metrics on")
	dbURL := flag.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL of a read-only role (default $DATABASE_URL)")
	tokenFile := flag.String("token-file", "", "file holding the bearer token (default $PORTAL_TOKEN)")
	namespace := flag.String("namespace", "", "read PromoCodes and Offers of this namespace only (default: all)")
	queryTimeout := flag.Duration("query-timeout", 10*time.Second, "bound on a page's database queries")
	flag.Parse()

	token := os.Getenv("PORTAL_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("reading the token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return errors.New("a token is required: --token-file or $PORTAL_TOKEN")
	}
	if *dbURL == "" {
		return errors.New("--database-url or $DATABASE_URL is required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pgcfg, err := pgxpool.ParseConfig(*dbURL)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	portal.ReadOnly(pgcfg)
	pool, err := pgxpool.NewWithConfig(ctx, pgcfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	scheme := runtime.NewScheme()
	if err := trackingv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes config: %w", err)
	}
	opts := cache.Options{Scheme: scheme}
	if *namespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{*namespace: {}}
	}
	codeCache, err := kube.NewCache(restCfg, opts)
	if err != nil {
		return err
	}
	if err := portal.IndexCodes(ctx, codeCache); err != nil {
		return err
	}
	// Start informers for both kinds before serving; readiness waits for them.
	for _, obj := range []client.Object{&trackingv1alpha1.PromoCode{}, &trackingv1alpha1.Offer{}} {
		if _, err := codeCache.GetInformer(ctx, obj); err != nil {
			return err
		}
	}
	go func() {
		if err := codeCache.Start(ctx); err != nil {
			log.Error("Promo code cache stopped", "err", err)
			stop()
		}
	}()
	synced := make(chan struct{})
	go func() {
		if codeCache.WaitForCacheSync(ctx) {
			close(synced)
		}
	}()
	ready := func() bool {
		select {
		case <-synced:
			return true
		default:
			return false
		}
	}

	srv := portal.NewServer(portal.Config{Token: token, QueryTimeout: *queryTimeout, Ready: ready},
		&portal.Store{Pool: pool}, &portal.Codes{Reader: codeCache}, log)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Info("Portal listening", "addr", l.Addr().String())
	return srv.Serve(ctx, l)
}
