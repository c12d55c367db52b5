// Command manager runs promo-operator's control plane: the Offer and
// PromoCode controllers, the validating webhooks, and the route server that
// streams the routing table to trackers.
//
// Every replica serves the webhooks and the routes; the controllers run on
// the elected leader. Each replica provisions its webhook serving certificate
// itself (--cert-rotation, internal/certs) unless cert-manager provides it
// (--cert-rotation=false, the config/certmanager overlay).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/controllers"
	"promocodes.dev/promo-operator/internal/certs"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routeserver"
)

// options are the manager's flags.
type options struct {
	metricsAddr, probeAddr, routeAddr, routeTokenFile string
	pprofAddr                                         string
	enableWebhooks, routeTLS                          bool
	webhookPort                                       int
	certDir                                           string
	concurrency                                       int

	leaderElect                               bool
	leaseDuration, renewDeadline, retryPeriod time.Duration
	gracefulShutdown, drainDelay              time.Duration

	certRotation                                    bool
	certSecret, certService, webhookConfig, certDNS string
	namespace                                       string // from POD_NAMESPACE
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "metrics endpoint address (0 disables)")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "serve net/http/pprof (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (empty: off; it is unauthenticated, never expose it)")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "health probe address: /healthz (alive) and /readyz (caches synced, first routing table built, webhook server serving)")
	flag.StringVar(&o.routeAddr, "route-listen", ":8090", "route server address trackers connect to")
	flag.StringVar(&o.routeTokenFile, "route-token-file", "", "file holding the bearer token trackers must present (required)")
	flag.BoolVar(&o.routeTLS, "route-tls", false, "serve the routes over TLS only, with the webhook serving certificate (--webhook-cert-dir; put the routes Service's names in --cert-extra-dns-names). Without it, Storefront signing secrets go to loopback clients only")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader for the controllers (the route server and the webhooks run on every replica)")
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long non-leaders wait before taking over a lease that is not renewed")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing its lease before giving up leadership (and exiting)")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to acquire or renew the lease")
	flag.DurationVar(&o.gracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "how long the manager waits for its runnables to stop after the drain delay")
	flag.DurationVar(&o.drainDelay, "drain-delay", 0, "on SIGTERM, answer /readyz 503 \"draining\" and keep serving webhooks and routes this long before stopping, while endpoints drop the pod (the manifests set 5s)")
	flag.BoolVar(&o.enableWebhooks, "enable-webhooks", true, "serve the validating admission webhooks")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "webhook server port")
	flag.StringVar(&o.certDir, "webhook-cert-dir", "", "directory with tls.crt and tls.key for the webhook server; with --cert-rotation the manager writes them there (default $TMPDIR/k8s-webhook-server/serving-certs)")
	flag.BoolVar(&o.certRotation, "cert-rotation", true, "provision and rotate the webhook serving certificate in --cert-secret-name and patch the webhook configuration's caBundle (false: cert-manager or someone else puts tls.crt and tls.key in --webhook-cert-dir)")
	flag.StringVar(&o.certSecret, "cert-secret-name", "promo-operator-webhook-server-cert", "Secret, in the manager's namespace ($POD_NAMESPACE), holding the webhook CA and serving certificate")
	flag.StringVar(&o.certService, "cert-service-name", "promo-operator-webhook-service", "webhook Service the certificate is for (<service>.<namespace>.svc)")
	flag.StringVar(&o.certDNS, "cert-extra-dns-names", "", "comma-separated additional DNS names for the webhook certificate")
	flag.StringVar(&o.webhookConfig, "webhook-config-name", "promo-operator-validating-webhook-configuration", "ValidatingWebhookConfiguration whose caBundle the manager keeps")
	flag.IntVar(&o.concurrency, "max-concurrent-reconciles", 4, "reconciles in parallel per controller")
	zo := zap.Options{}
	zo.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zo)))
	o.namespace = podNamespace()

	var draining atomic.Bool
	ctx := signalContext(o.drainDelay, &draining)
	if err := run(ctx, ctrl.GetConfigOrDie(), o, &draining); err != nil {
		ctrl.Log.Error(err, "Manager failed")
		os.Exit(1)
	}
}

// podNamespace is $POD_NAMESPACE (the downward API), else the service
// account's namespace when in a pod.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

// signalContext ends when SIGTERM or SIGINT arrived and drainDelay passed;
// draining is set at the signal. A second signal exits at once.
func signalContext(drainDelay time.Duration, draining *atomic.Bool) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		draining.Store(true)
		if drainDelay > 0 {
			ctrl.Log.Info("Draining: /readyz answers 503, still serving", "for", drainDelay)
			select {
			case <-time.After(drainDelay):
			case <-sigs:
				os.Exit(1)
			}
		}
		cancel()
		<-sigs
		os.Exit(1)
	}()
	return ctx
}

func run(ctx context.Context, cfg *rest.Config, o options, draining *atomic.Bool) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	token, err := os.ReadFile(o.routeTokenFile)
	if err != nil {
		return fmt.Errorf("reading --route-token-file: %w", err)
	}
	if o.certDir == "" {
		o.certDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	if o.enableWebhooks && o.certRotation && o.namespace == "" {
		return errors.New("--cert-rotation needs the manager's namespace: set $POD_NAMESPACE (the manifests do, from the downward API), or pass --cert-rotation=false and provide the certificate in --webhook-cert-dir")
	}
	webhookServer := &gatedWebhookServer{Server: webhook.NewServer(webhook.Options{Port: o.webhookPort, CertDir: o.certDir})}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "promo-operator.tracking.promocodes.dev",
		LeaderElectionNamespace:       o.namespace, // "" in a pod: the service account's
		LeaderElectionReleaseOnCancel: true,        // hand over at once on shutdown; the process exits right after
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		GracefulShutdownTimeout:       &o.gracefulShutdown,
		WebhookServer:                 webhookServer, // its Start waits for the certificate
		NewCache:                      kube.NewCache, // the PromoCodeSet folded-code directory
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: {Transform: kube.HashSecretData}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := setupControllers(ctx, mgr, o.concurrency); err != nil {
		return err
	}
	rs := &routeserver.Server{Addr: o.routeAddr, Token: strings.TrimSpace(string(token)), Cache: mgr.GetCache(), SecretReader: mgr.GetAPIReader(),
		Log: ctrl.Log.WithName("routes")}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	checks := map[string]healthz.Checker{
		"draining": func(*http.Request) error {
			if draining.Load() {
				return errors.New("draining: shutting down")
			}
			return nil
		},
		"informers": func(req *http.Request) error {
			sctx, cancel := context.WithTimeout(req.Context(), time.Second)
			defer cancel()
			if !mgr.GetCache().WaitForCacheSync(sctx) {
				return errors.New("informer caches not synced yet")
			}
			return nil
		},
		"routes": rs.ReadyCheck,
	}
	if o.enableWebhooks {
		if o.certRotation {
			var extra []string
			if o.certDNS != "" {
				extra = strings.Split(o.certDNS, ",")
			}
			if webhookServer.certsReady, err = certs.Setup(mgr, certs.Options{
				Namespace: o.namespace, SecretName: o.certSecret, ServiceName: o.certService, ExtraDNSNames: extra,
				WebhookConfigName: o.webhookConfig, CertDir: o.certDir,
			}, ctrl.Log.WithName("certs")); err != nil {
				return err
			}
		}
		// Registered now, before the manager starts; the server itself
		// starts once the certificate is in place.
		if err := controllers.SetupWebhooks(mgr); err != nil {
			return err
		}
		checks["webhooks"] = webhookServer.ReadyCheck
	}
	if o.routeTLS {
		if o.certRotation && !o.enableWebhooks {
			return errors.New("--route-tls uses the webhook serving certificate, which --cert-rotation provisions only with --enable-webhooks; or pass --cert-rotation=false and provide it in --webhook-cert-dir")
		}
		// Ready: nil with cert-manager (the files are mounted), else once
		// the rotator wrote them.
		rs.TLS = &routeserver.TLSFiles{CertFile: filepath.Join(o.certDir, corev1.TLSCertKey), KeyFile: filepath.Join(o.certDir, corev1.TLSPrivateKeyKey),
			Ready: webhookServer.certsReady}
	}
	if err := mgr.Add(rs); err != nil {
		return err
	}
	for name, check := range checks {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return err
		}
	}
	ctrl.Log.Info("Starting manager", "routes", o.routeAddr, "routeTLS", o.routeTLS, "webhooks", o.enableWebhooks, "certRotation", o.enableWebhooks && o.certRotation,
		"namespace", o.namespace, "leaderElection", o.leaderElect)
	return mgr.Start(ctx)
}

func setupControllers(ctx context.Context, mgr ctrl.Manager, concurrency int) error {
	if err := kube.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	if err := kube.SetupStorefrontIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
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
	if err := (&controllers.PromoCodeSetReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("promocodeset-controller"),
		MaxConcurrentReconciles: concurrency}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the PromoCodeSet controller: %w", err)
	}
	if err := (&controllers.StorefrontReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("storefront-controller"),
		MaxConcurrentReconciles: concurrency}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Storefront controller: %w", err)
	}
	return nil
}

// gatedWebhookServer starts the webhook server only once the serving
// certificate is in place (certsReady; nil: it is there from the start):
// controller-runtime's server loads its certificate when it starts, and
// every replica serves webhooks, so each waits for its own files.
type gatedWebhookServer struct {
	webhook.Server
	certsReady <-chan struct{}
}

func (g *gatedWebhookServer) Start(ctx context.Context) error {
	if g.certsReady != nil {
		select {
		case <-g.certsReady:
			ctrl.Log.Info("Webhook serving certificate in place; starting the webhook server")
		case <-ctx.Done():
			return nil
		}
	}
	return g.Server.Start(ctx)
}

// ReadyCheck: ok once the certificate is in place and the server accepts
// TLS connections.
func (g *gatedWebhookServer) ReadyCheck(req *http.Request) error {
	if g.certsReady != nil {
		select {
		case <-g.certsReady:
		default:
			return errors.New("webhook serving certificate not in place yet")
		}
	}
	return g.StartedChecker()(req)
}
