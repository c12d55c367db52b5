// Command dev runs the whole product locally (`make dev`, SPEC §6): it builds
// what it needs, starts etcd + kube-apiserver, PostgreSQL, the manager and a
// tracker and the portal, applies config/samples, prints example requests, writes .dev/env
// once everything is ready, and stops everything on Ctrl-C / SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"promocodes.dev/promo-operator/internal/devstack"
)

func main() {
	root := flag.String("root", ".", "repository root")
	trackerPort := flag.Int("tracker-port", 8080, "preferred tracker port (a free one is used when busy)")
	portalPort := flag.Int("portal-port", 8081, "preferred portal port (a free one is used when busy)")
	skipBuild := flag.Bool("skip-build", false, "use the binaries already in bin/")
	flag.Parse()
	if err := run(*root, *trackerPort, *portalPort, *skipBuild); err != nil {
		fmt.Fprintf(os.Stderr, "make dev: %v\n", err)
		os.Exit(1)
	}
}

func run(root string, trackerPort, portalPort int, skipBuild bool) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if !skipBuild {
		if err := devstack.Build(ctx, root, os.Stdout); err != nil {
			return err
		}
	}
	dir := filepath.Join(root, ".dev")
	_ = os.Remove(filepath.Join(dir, "env"))
	started := time.Now()
	s, err := devstack.Start(ctx, devstack.Options{
		Root: root, Dir: dir, TrackerPort: trackerPort, PortalPort: portalPort,
		DatabaseURL: os.Getenv("DATABASE_URL"), Out: os.Stdout,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "make dev: stopping: %v\n", err)
		}
		fmt.Println("==> stopped")
	}()

	fmt.Println("==> applying config/samples")
	out, err := s.Kubectl(ctx, nil, "apply", "-k", filepath.Join(root, "config", "samples"))
	if err != nil {
		return err
	}
	fmt.Print(out)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.WaitReconciled(wctx); err != nil {
		return err
	}
	tracker := s.Trackers["tracker"]
	if err := devstack.WaitServable(wctx, tracker.URL, "PROMO22", 0); err != nil {
		return err
	}
	envFile, err := s.WriteEnv(nil)
	if err != nil {
		return err
	}
	printWelcome(s, tracker.URL, envFile, time.Since(started))

	<-ctx.Done()
	fmt.Println("\n==> shutting down")
	return nil
}

func printWelcome(s *devstack.Stack, trackerURL, envFile string, took time.Duration) {
	fmt.Printf(`
promo-operator is running (ready in %s). Logs: %s

  source %s          # KUBECONFIG, TRACKER_URL, DATABASE_URL, PORTAL_URL, PORTAL_TOKEN

  kubectl get promo -A                                   # Offers and PromoCodes (bin/k8s/kubectl)
  curl -s "%s/track/promo?code=PROMO22&amount=19.99&adv_order_id=order-1"
  curl -s "%s/track/promo?code=promo22&offer_id=8&goal_alias=sale&amount=50"
  curl -s "%s/track/promo?code=VIP10&token=s3cret-vip&amount=100"
  curl -si "%s/track/promo?code=PROMO22&return=img" | head -5
  psql "$DATABASE_URL" -c 'select created_at, promo_code, offer_id, affiliate_id, status, amount, payout from conversions order by id desc limit 5'
  curl -s -H "Authorization: Bearer $PORTAL_TOKEN" "$PORTAL_URL/api/v1/transactions?promo_code=promo22"
  curl -s -H "Authorization: Bearer $PORTAL_TOKEN" "$PORTAL_URL/api/v1/affiliates/42/promo-codes"

  Reports in a browser: %s (sign in with the token in %s)

Press Ctrl-C to stop everything.
`, took.Round(100*time.Millisecond), s.LogDir, envFile, trackerURL, trackerURL, trackerURL, trackerURL, s.PortalURL, filepath.Join(filepath.Dir(envFile), "portal-token"))
}
