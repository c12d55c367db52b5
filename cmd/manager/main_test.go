package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

// The test binary doubles as the manager: with $PROMO_MANAGER_TEST_MAIN set
// it runs main with its arguments, so the test starts real manager processes
// (two replicas, signals, exit codes) without building a binary.
func TestMain(m *testing.M) {
	if os.Getenv("PROMO_MANAGER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	ns         = "promo-system"
	secretName = "promo-operator-webhook-server-cert"
	vwcName    = "promo-operator-validating-webhook-configuration"
	saUser     = "system:serviceaccount:" + ns + ":promo-operator-controller-manager"
)

// TestTwoReplicasWithoutCertManager runs two manager replicas as the
// manifests do — leader election, --cert-rotation, the generated RBAC and
// nothing more, the shipped empty Secret — against a real API server, and
// checks what SPEC §9 promises: each replica is unready until its caches
// synced, its routing table is built and its webhook server serves the
// certificate it provisioned; the API server trusts that certificate (the CA
// was patched into the webhook configuration); both replicas serve
// webhooks; SIGTERM drains (503 "draining", still serving) and hands the
// lease over at once.
func TestTwoReplicasWithoutCertManager(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join("..", "..", "bin", "k8s"), // KUBEBUILDER_ASSETS wins when set
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(trackingv1alpha1.AddToScheme(scheme))
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// What config/default installs for the manager, minus the Deployment.
	must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	for _, f := range []string{"role.yaml", "role_binding.yaml", "leader_election_role.yaml", "leader_election_role_binding.yaml"} {
		for _, o := range readObjects(t, filepath.Join("..", "..", "config", "rbac", f)) {
			must(t, admin.Create(ctx, asDeployed(o)))
		}
	}
	for _, o := range readObjects(t, filepath.Join("..", "..", "config", "manager", "webhook-server-cert.yaml")) {
		must(t, admin.Create(ctx, asDeployed(o)))
	}
	ports := []int{freePort(t), freePort(t)}
	vwc := readObjects(t, filepath.Join("..", "..", "config", "webhook", "manifests.yaml"))[0]
	vwc.SetName(vwcName)
	pointWebhooksAt(t, vwc, ports[0])
	must(t, admin.Create(ctx, vwc))

	// The manager runs as its service account: only config/rbac's grants.
	user, err := env.AddUser(envtest.User{Name: saUser}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig, tokenFile := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "route-token")
	must(t, os.WriteFile(kubeconfig, kc, 0o600))
	must(t, os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600))

	replicas := make([]*replica, 2)
	for i := range replicas {
		replicas[i] = startReplica(t, fmt.Sprintf("manager-%d", i), kubeconfig, tokenFile, ports[i])
	}
	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, r := range replicas {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.waitReady(90 * time.Second) }()
	}
	wg.Wait()
	for i, r := range replicas {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if r.first == http.StatusOK {
			t.Errorf("%s: ready at once, want unready before certificates, caches and routes", r.name)
		}
		if _, body := r.readyz(); !strings.Contains(body, "[+]webhooks ok") || !strings.Contains(body, "[+]routes ok") || !strings.Contains(body, "[+]informers ok") {
			t.Errorf("%s: /readyz?verbose:\n%s", r.name, body)
		}
	}

	// The Secret holds the CA and the serving certificate; the webhook
	// configuration carries that CA; every replica serves a certificate the
	// CA verifies for the Service's name.
	var sec corev1.Secret
	must(t, admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, &sec))
	ca := sec.Data["ca.crt"]
	if len(ca) == 0 || len(sec.Data["tls.crt"]) == 0 || len(sec.Data["tls.key"]) == 0 {
		t.Fatalf("secret keys: %v", keys(sec.Data))
	}
	must(t, admin.Get(ctx, client.ObjectKey{Name: vwcName}, vwc))
	hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
	for _, h := range hooks {
		if b, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "caBundle"); b == "" {
			t.Fatalf("webhook without caBundle: %v", h)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("ca.crt is no PEM certificate")
	}
	for _, r := range replicas {
		if err := handshake(r.webhookPort, pool); err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
	}

	// Through the API server: the webhook refuses a taken code.
	shop := "shop"
	must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shop}}))
	must(t, admin.Create(ctx, offer(shop, "summer", 7)))
	waitOfferReady(t, admin, shop, "summer")
	must(t, admin.Create(ctx, code(shop, "promo22-a", "PROMO22", 42)))
	if err := refused(admin, code(shop, "promo22-b", "promo22", 43)); err != nil {
		t.Fatal(err)
	}

	// SIGTERM the leader: it drains — unready at once, still serving — then
	// releases the lease, and the other replica's controllers take over long
	// before the lease would have expired (15s).
	leader, other := replicas[0], replicas[1]
	poll.Until(t, 30*time.Second, func() (bool, string) {
		if leader.logged("Successfully acquired lease") {
			return true, ""
		}
		if other.logged("Successfully acquired lease") {
			leader, other = other, leader
			return true, ""
		}
		return false, "no replica acquired the lease"
	})
	stopped := time.Now()
	must(t, leader.cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(200 * time.Millisecond)
	if code, body := leader.readyz(); code == http.StatusOK || !strings.Contains(body, "draining") {
		t.Errorf("draining leader: /readyz %d\n%s", code, body)
	}
	if err := handshake(leader.webhookPort, pool); err != nil {
		t.Errorf("draining leader stopped serving webhooks: %v", err)
	}
	if err := leader.wait(30 * time.Second); err != nil {
		t.Errorf("leader exit: %v", err)
	}
	for !other.logged("Successfully acquired lease") {
		if time.Since(stopped) > 12*time.Second {
			t.Fatalf("the lease was not handed over within 12s of SIGTERM (2s drain)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("lease taken over %v after SIGTERM", time.Since(stopped).Round(10*time.Millisecond))

	// The survivor serves the webhooks and runs the controllers.
	must(t, admin.Get(ctx, client.ObjectKey{Name: vwcName}, vwc))
	pointWebhooksAt(t, vwc, other.webhookPort)
	must(t, admin.Update(ctx, vwc))
	// The API server picks the changed webhook configuration up from its own
	// informer: calls may reach the stopped replica for a moment.
	for try := 0; ; try++ {
		err := admin.Create(ctx, offer(shop, "winter", 8))
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "connection refused") || try == 50 {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitOfferReady(t, admin, shop, "winter")
	if err := refused(admin, code(shop, "promo22-c", "PROMO22", 44)); err != nil {
		t.Fatalf("through the survivor: %v", err)
	}
	for _, r := range replicas {
		if r.logged("WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race", r.name)
		}
	}
}

type replica struct {
	name                   string
	cmd                    *exec.Cmd
	out                    *syncBuffer
	probePort, webhookPort int
	first                  int // status of the first /readyz answer
	done                   chan error
}

func startReplica(t *testing.T, name, kubeconfig, tokenFile string, webhookPort int) *replica {
	t.Helper()
	r := &replica{name: name, out: &syncBuffer{}, probePort: freePort(t), webhookPort: webhookPort, done: make(chan error, 1)}
	r.cmd = exec.Command(os.Args[0],
		"--leader-elect",
		"--metrics-bind-address=0",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", r.probePort),
		fmt.Sprintf("--route-listen=127.0.0.1:%d", freePort(t)),
		"--route-token-file="+tokenFile,
		fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-cert-dir="+t.TempDir(), // each replica's own emptyDir
		"--cert-extra-dns-names=localhost",
		"--drain-delay=2s",
	)
	r.cmd.Env = append(os.Environ(), "PROMO_MANAGER_TEST_MAIN=1", "KUBECONFIG="+kubeconfig, "POD_NAMESPACE="+ns)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	must(t, r.cmd.Start())
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, r.out.String())
		}
	})
	return r
}

func (r *replica) readyz() (int, string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz?verbose", r.probePort))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *replica) waitReady(timeout time.Duration) error {
	var code int
	var body string
	err := poll.For(timeout, func() (bool, error) {
		code, body = r.readyz()
		if r.first == 0 && code != 0 {
			r.first = code
		}
		if code == http.StatusOK {
			return true, nil
		}
		select {
		case err := <-r.done:
			r.done <- err
			return false, fmt.Errorf("%s exited: %v", r.name, err)
		default:
			return false, nil
		}
	})
	if errors.Is(err, poll.ErrTimeout) {
		return fmt.Errorf("%s not ready after %v: %d\n%s", r.name, timeout, code, body)
	}
	return err
}

func (r *replica) logged(s string) bool { return strings.Contains(r.out.String(), s) }

func (r *replica) wait(timeout time.Duration) error {
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v", timeout)
	}
}

// handshake dials a webhook server and verifies its certificate for the
// webhook Service's name against the CA.
func handshake(port int, roots *x509.CertPool) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port),
		&tls.Config{RootCAs: roots, ServerName: "promo-operator-webhook-service." + ns + ".svc", MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	return conn.Close()
}

// asDeployed gives a config/ object the namespace and name prefix
// config/default gives it (names inside rules are final already).
func asDeployed(o *unstructured.Unstructured) *unstructured.Unstructured {
	o.SetName("promo-operator-" + o.GetName())
	if o.GetNamespace() != "" {
		o.SetNamespace(ns)
	}
	if ref, ok, _ := unstructured.NestedString(o.Object, "roleRef", "name"); ok {
		_ = unstructured.SetNestedField(o.Object, "promo-operator-"+ref, "roleRef", "name")
	}
	if subjects, ok, _ := unstructured.NestedSlice(o.Object, "subjects"); ok {
		for _, s := range subjects {
			m := s.(map[string]any)
			m["name"], m["namespace"] = "promo-operator-"+m["name"].(string), ns
		}
		_ = unstructured.SetNestedSlice(o.Object, subjects, "subjects")
	}
	return o
}

// pointWebhooksAt makes every webhook call https://localhost:port (the
// certificate carries localhost through --cert-extra-dns-names), keeping
// the caBundle.
func pointWebhooksAt(t *testing.T, vwc *unstructured.Unstructured, port int) {
	t.Helper()
	hooks, _, err := unstructured.NestedSlice(vwc.Object, "webhooks")
	must(t, err)
	for _, h := range hooks {
		m := h.(map[string]any)
		cc := m["clientConfig"].(map[string]any)
		path, _, _ := unstructured.NestedString(cc, "service", "path")
		if path == "" {
			u, _ := cc["url"].(string)
			path = u[strings.Index(u, "/validate"):]
		}
		delete(cc, "service")
		cc["url"] = fmt.Sprintf("https://localhost:%d%s", port, path)
	}
	must(t, unstructured.SetNestedSlice(vwc.Object, hooks, "webhooks"))
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

func offer(namespace, name string, id int64) *trackingv1alpha1.Offer {
	return &trackingv1alpha1.Offer{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: trackingv1alpha1.OfferSpec{ID: id, Currency: "USD",
			Tracking: trackingv1alpha1.Tracking{PromoCodes: trackingv1alpha1.PromoCodeTracking{Enabled: true}},
			Goals: []trackingv1alpha1.Goal{{ID: 1, Alias: "sale", Default: true, Status: "approved",
				Payout: trackingv1alpha1.Money{Percent: ptr.To("10")}, Revenue: trackingv1alpha1.Money{Fixed: ptr.To("8.00")}}}},
	}
}

func code(namespace, name, c string, affiliate int64) *trackingv1alpha1.PromoCode {
	return &trackingv1alpha1.PromoCode{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       trackingv1alpha1.PromoCodeSpec{Code: c, OfferRef: trackingv1alpha1.LocalOfferReference{Name: "summer"}, AffiliateID: affiliate},
	}
}

// refused creates pc until the webhook refuses it: the webhook reads its
// replica's cache, which may not have the code it collides with yet (an
// admitted try is deleted).
func refused(c client.Client, pc *trackingv1alpha1.PromoCode) error {
	ctx := context.Background()
	for try := 0; ; try++ {
		p := pc.DeepCopy()
		p.Name = fmt.Sprintf("%s-%d", pc.Name, try)
		err := c.Create(ctx, p)
		if err != nil && strings.Contains(err.Error(), `admission webhook "vpromocode.tracking.promocodes.dev" denied the request`) {
			return nil
		}
		if err != nil || try == 50 {
			return fmt.Errorf("a code held by another affiliate, try %d: %v", try, err)
		}
		_ = c.Delete(ctx, p)
		time.Sleep(200 * time.Millisecond)
	}
}

func waitOfferReady(t *testing.T, c client.Client, namespace, name string) {
	t.Helper()
	poll.Until(t, 30*time.Second, func() (bool, string) {
		var o trackingv1alpha1.Offer
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &o); err == nil {
			for _, cond := range o.Status.Conditions {
				if cond.Type == trackingv1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("Offer %s/%s not Ready: the controllers do not run", namespace, name)
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
