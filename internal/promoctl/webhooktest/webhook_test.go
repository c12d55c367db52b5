// Package webhooktest runs kubectl promo against the real manager: envtest
// with the CRDs and the admission webhooks, the Offer, PromoCode and
// PromoCodeSet controllers running. It checks what the plugin's order of
// operations is for: codes moving between the sets of an import are never
// refused by the webhook nor rejected by the controller.
package webhooktest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/controllers"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/promoctl"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

var (
	k8sClient  client.Client
	kubeconfig string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	root := filepath.Join("..", "..", "..")
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join(root, "bin", "k8s"),
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}},
	}
	cfg, err := env.Start()
	if err != nil {
		return fail(err)
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}
	wio := &env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:        scheme,
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir}),
		NewCache:      kube.NewCache,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: {Transform: kube.HashSecretData}},
		},
	})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := kube.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fail(err)
	}
	for _, setup := range []func() error{
		func() error {
			return (&controllers.OfferReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("offer-controller"), MaxConcurrentReconciles: 2}).SetupWithManager(mgr)
		},
		func() error {
			return (&controllers.PromoCodeReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("promocode-controller"), MaxConcurrentReconciles: 2}).SetupWithManager(mgr)
		},
		func() error {
			return (&controllers.PromoCodeSetReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("promocodeset-controller"), MaxConcurrentReconciles: 2}).SetupWithManager(mgr)
		},
		func() error { return controllers.SetupWebhooks(mgr) },
	} {
		if err := setup(); err != nil {
			return fail(err)
		}
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	addr := net.JoinHostPort(wio.LocalServingHost, fmt.Sprint(wio.LocalServingPort))
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test
		if err != nil {
			return false, nil
		}
		return true, conn.Close()
	}); err != nil {
		return fail(fmt.Errorf("the webhook server did not answer: %w", err))
	}
	user, err := env.AddUser(envtest.User{Name: "promo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "kubectl-promo-webhook")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	return m.Run()
}

func kubectlPromo(stdin string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	cmd := promoctl.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

func csvOf(prefix string, n, affiliate int) string {
	var b strings.Builder
	b.WriteString("code,affiliate_id\n")
	for i := range n {
		fmt.Fprintf(&b, "%s%05d,%d\n", prefix, i, affiliate)
	}
	return b.String()
}

func setup(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "promo-"}}
	if err := k8sClient.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Create(ctx, fixtures.Offer(ns.Name, "o", time.Now().UnixNano()%1_000_000_000+1, true)); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// settled waits until every set of ns has status for its generation, and
// returns them.
func settled(t *testing.T, ns string, wantSets int) []trackingv1alpha1.PromoCodeSet {
	t.Helper()
	var l trackingv1alpha1.PromoCodeSetList
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := k8sClient.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		if len(l.Items) != wantSets {
			return false, nil
		}
		for _, s := range l.Items {
			if s.Status.ObservedGeneration != s.Generation || int(s.Status.Codes) != len(s.Spec.Codes) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("sets of %s did not settle: %v (%d sets)", ns, err, len(l.Items))
	}
	return l.Items
}

// Growing an import past 1,024 codes doubles its sets: about half of the
// codes move from set 0000 to the new set 0001. Written additions-first,
// 0001's create would be refused by the webhook (its codes still held by
// 0000, same affiliate and offer: DuplicateCode for the younger set).
func TestCodesMoveBetweenSetsWithoutRefusalOrRejection(t *testing.T) {
	ns := setup(t)
	if out, err := kubectlPromo(csvOf("MV", 1000, 42), "import", "-", "--offer", "o", "-n", ns); err != nil {
		t.Fatalf("first import: %v\n%s", err, out)
	}
	settled(t, ns, 1)
	out, err := kubectlPromo(csvOf("MV", 1025, 42), "import", "-", "--offer", "o", "-n", ns)
	if err != nil {
		t.Fatalf("the import that moves codes was refused: %v\n%s", err, out)
	}
	total := 0
	for _, s := range settled(t, ns, 2) {
		total += len(s.Spec.Codes)
		if s.Status.Rejected != 0 {
			t.Errorf("%s: %d entries rejected: %+v", s.Name, s.Status.Rejected, s.Status.RejectedCodes)
		}
	}
	if total != 1025 {
		t.Errorf("%d entries, want 1025", total)
	}
	// And back: 0001 is deleted, its codes return to 0000.
	if out, err := kubectlPromo(csvOf("MV", 1000, 42), "import", "-", "--offer", "o", "-n", ns); err != nil {
		t.Fatalf("shrinking import: %v\n%s", err, out)
	}
	for _, s := range settled(t, ns, 1) {
		if s.Status.Rejected != 0 || len(s.Spec.Codes) != 1000 {
			t.Errorf("%s: %d codes, %d rejected", s.Name, len(s.Spec.Codes), s.Status.Rejected)
		}
	}
}

// A code held by another affiliate is refused by the webhook (preflight off): the import
// stops with the server's message naming the holder.
func TestImportOfAnotherAffiliatesCodeIsRefused(t *testing.T) {
	ns := setup(t)
	if err := k8sClient.Create(context.Background(), fixtures.PromoCode(ns, "held", "TAKEN1", "o", 7)); err != nil {
		t.Fatal(err)
	}
	out, err := kubectlPromo("code,affiliate_id\nFREE1,42\ntaken1,42\n", "import", "-", "--offer", "o", "-n", ns, "--no-preflight")
	if err == nil {
		t.Fatalf("import of a held code succeeded:\n%s", out)
	}
	if !strings.Contains(err.Error(), "taken1") || !strings.Contains(err.Error(), ns+"/held") {
		t.Errorf("error does not name the code and its holder: %v", err)
	}
	var l trackingv1alpha1.PromoCodeSetList
	if err := k8sClient.List(context.Background(), &l, client.InNamespace(ns)); err != nil || len(l.Items) != 0 {
		t.Errorf("%d sets stored, %v", len(l.Items), err)
	}
}
