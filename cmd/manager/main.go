// Command manager runs promo-operator's control plane: the Offer and
// PromoCode controllers, the validating webhooks, and the route server that
// streams the routing table to trackers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/controllers"
	"promocodes.dev/promo-operator/internal/routeserver"
)

func main() {
	var (
		metricsAddr, probeAddr, routeAddr, routeTokenFile, certDir string
		leaderElect, enableWebhooks                                bool
		webhookPort, concurrency                                   int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "metrics endpoint address (0 disables)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "health probe address")
	flag.StringVar(&routeAddr, "route-listen", ":8090", "route server address trackers connect to")
	flag.StringVar(&routeTokenFile, "route-token-file", "", "file holding the bearer token trackers must present (required)")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader for the controllers (the route server runs on every replica)")
	flag.BoolVar(&enableWebhooks, "enable-webhooks", true, "serve the validating admission webhooks")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "webhook server port")
	flag.StringVar(&certDir, "webhook-cert-dir", "", "directory with tls.crt and tls.key for the webhook server")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 4, "reconciles in parallel per controller")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	if err := run(metricsAddr, probeAddr, routeAddr, routeTokenFile, certDir, leaderElect, enableWebhooks, webhookPort, concurrency); err != nil {
		ctrl.Log.Error(err, "Manager failed")
		os.Exit(1)
	}
}

func run(metricsAddr, probeAddr, routeAddr, routeTokenFile, certDir string, leaderElect, enableWebhooks bool, webhookPort, concurrency int) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	token, err := os.ReadFile(routeTokenFile)
	if err != nil {
		return fmt.Errorf("reading --route-token-file: %w", err)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "promo-operator.tracking.promocodes.dev",
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: certDir}),
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: {Transform: controllers.HashSecretData}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := setup(ctx, mgr, enableWebhooks, concurrency); err != nil {
		return err
	}
	rs := &routeserver.Server{Addr: routeAddr, Token: strings.TrimSpace(string(token)), Cache: mgr.GetCache(), Log: ctrl.Log.WithName("routes")}
	if err := mgr.Add(rs); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("Starting manager", "routes", routeAddr, "webhooks", enableWebhooks)
	return mgr.Start(ctx)
}

func setup(ctx context.Context, mgr ctrl.Manager, enableWebhooks bool, concurrency int) error {
	if err := controllers.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	if err := (&controllers.OfferReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("offer-controller"),
		MaxConcurrentReconciles: concurrency}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Offer controller: %w", err)
	}
	if err := (&controllers.PromoCodeReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("promocode-controller"),
		MaxConcurrentReconciles: concurrency}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the PromoCode controller: %w", err)
	}
	if enableWebhooks {
		return controllers.SetupWebhooks(mgr)
	}
	return nil
}
