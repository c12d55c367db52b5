package promoctl_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/promoctl"
)

// One real kube-apiserver + etcd with the CRDs for the package; every test
// works in a namespace of its own (envtest cannot delete namespaces).
var (
	k8sClient  client.Client
	kubeconfig string
	cacheDir   string // the plugin's --cache-dir: shared by the tests, as by a user's runs
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join("..", "..", "bin", "k8s"), // KUBEBUILDER_ASSETS wins when set
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	user, err := env.AddUser(envtest.User{Name: "promo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kubectl-promo-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig, cacheDir = filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "cache")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is what one run of the plugin printed.
type result struct {
	out, errOut string
	err         error
}

// kubectlPromo runs the plugin's real command with the test kubeconfig.
func kubectlPromo(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := promoctl.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig, "--cache-dir", cacheDir}, args...))
	err := cmd.ExecuteContext(context.Background())
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

func mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := kubectlPromo(t, stdin, args...)
	if r.err != nil {
		t.Fatalf("kubectl promo %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.err, r.out, r.errOut)
	}
	return r
}

func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "promo-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// writeFile writes content into a temporary file and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sets returns the namespace's PromoCodeSets by name.
func sets(t testing.TB, ns string) map[string]*trackingv1alpha1.PromoCodeSet {
	t.Helper()
	var l trackingv1alpha1.PromoCodeSetList
	if err := k8sClient.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]*trackingv1alpha1.PromoCodeSet{}
	for i := range l.Items {
		out[l.Items[i].Name] = &l.Items[i]
	}
	return out
}

func versions(m map[string]*trackingv1alpha1.PromoCodeSet) map[string]string {
	out := map[string]string{}
	for n, s := range m {
		out[n] = s.ResourceVersion
	}
	return out
}

// codesOf returns code -> affiliate of every entry of the sets.
func codesOf(m map[string]*trackingv1alpha1.PromoCodeSet) map[string]int64 {
	out := map[string]int64{}
	for _, s := range m {
		for _, e := range s.Spec.Codes {
			out[e.Code] = e.AffiliateID
		}
	}
	return out
}

// csvOf writes n codes C<prefix>00000.. for affiliate 42 plus a header.
func csvOf(prefix string, n int) string {
	var b strings.Builder
	b.WriteString("code,affiliate_id\n")
	for i := range n {
		fmt.Fprintf(&b, "%s%05d,42\n", prefix, i)
	}
	return b.String()
}
