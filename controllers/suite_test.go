package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
)

var (
	testEnv   *envtest.Environment
	k8sClient client.Client
	scheme    = runtime.NewScheme()
	cancel    context.CancelFunc
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))

	testEnv = &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join("..", "bin", "k8s"), // KUBEBUILDER_ASSETS wins when set
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join("..", "config", "webhook")}},
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	wio := &testEnv.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
		}),
		NewCache: kube.NewCache,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: {Transform: kube.HashSecretData}},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, c := context.WithCancel(context.Background())
	cancel = c
	Expect(kube.SetupIndexes(ctx, mgr.GetFieldIndexer())).To(Succeed())
	Expect(kube.SetupStorefrontIndexes(ctx, mgr.GetFieldIndexer())).To(Succeed())
	Expect((&StorefrontReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("storefront-controller"), MaxConcurrentReconciles: 2}).SetupWithManager(mgr)).To(Succeed())
	Expect((&OfferReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("offer-controller"), MaxConcurrentReconciles: 2}).SetupWithManager(mgr)).To(Succeed())
	Expect((&PromoCodeReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("promocode-controller"), MaxConcurrentReconciles: 2,
		Now: clock.now}).SetupWithManager(mgr)).To(Succeed())
	Expect((&PromoCodeSetReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("promocodeset-controller"), MaxConcurrentReconciles: 2,
		Now: clock.now}).SetupWithManager(mgr)).To(Succeed())
	Expect(SetupWebhooks(mgr)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	// Wait for the webhook server to answer before specs create objects.
	addr := net.JoinHostPort(wio.LocalServingHost, fmt.Sprint(wio.LocalServingPort))
	Eventually(func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test
		if err != nil {
			return err
		}
		return conn.Close()
	}).WithTimeout(30 * time.Second).Should(Succeed())
})

// clock is the PromoCode reconciler's injected clock: the real time until a
// (Serial) spec sets it.
var clock testClock

type testClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Now()
	}
	return c.at
}

func (c *testClock) set(t time.Time) { c.mu.Lock(); c.at = t; c.mu.Unlock() }

func (c *testClock) reset() { c.set(time.Time{}) }

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// newNamespace creates a fresh namespace for one spec (envtest cannot delete
// namespaces, so specs never share one).
func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "promo-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}
