// Package devstack runs the whole product on one machine: a local control
// plane (etcd + kube-apiserver built from Go modules), PostgreSQL, the
// manager with its webhook and route server, and trackers, as local
// processes. `make dev` (hack/dev) and the end-to-end test both use it, so
// what developers run is what the test proves.
package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// Options configure a stack.
type Options struct {
	// Root is the repository root (bin/, config/, hack/).
	Root string
	// Dir holds the stack's state: kubeconfig, tokens, logs, snapshots, PostgreSQL.
	Dir string
	// TrackerPort is the preferred tracker port; when busy or zero, any free port.
	TrackerPort int
	// PortalPort is the preferred portal port; when busy or zero, any free port.
	PortalPort int
	// DatabaseURL is an existing PostgreSQL to use; empty starts a private one in Dir.
	DatabaseURL string
	// Out receives progress lines.
	Out io.Writer
	// ManagerPprof serves the manager's /debug/pprof on a free loopback port
	// (Stack.ManagerPprofURL): the benchmarks profile it.
	ManagerPprof bool
}

// Stack is a running product.
type Stack struct {
	opts Options

	Env            *envtest.Environment
	Config         *rest.Config
	Client         client.Client
	Kubeconfig     string
	DatabaseURL    string
	RouteURL       string
	RouteToken     string
	RouteTokenFile string
	// ManagerPprofURL is http://127.0.0.1:port of the manager's /debug/pprof
	// (Options.ManagerPprof), else empty.
	ManagerPprofURL string
	LogDir          string

	pgDir       string
	Manager     *Proc
	managerPort struct{ metrics, health, route int }
	Trackers    map[string]*Tracker
	Portal      *Proc
	PortalURL   string
	PortalToken string
}

// Tracker is a running tracker process.
type Tracker struct {
	*Proc
	URL          string
	SnapshotFile string
	port         int
}

func (s *Stack) logf(format string, args ...any) {
	if s.opts.Out != nil {
		fmt.Fprintf(s.opts.Out, "==> "+format+"\n", args...)
	}
}

// Bin returns the path of a built binary.
func (s *Stack) Bin(name string) string { return filepath.Join(s.opts.Root, "bin", name) }

// Build builds the Kubernetes binaries (first time: minutes) and the
// product's binaries into bin/.
func Build(ctx context.Context, root string, out io.Writer) error {
	steps := [][]string{
		{"bash", filepath.Join(root, "hack", "build-k8s-bins.sh")},
		{"go", "build", "-o", filepath.Join(root, "bin") + "/", "./cmd/..."},
	}
	for _, step := range steps {
		if out != nil {
			fmt.Fprintf(out, "==> %s\n", strings.Join(step, " "))
		}
		cmd := exec.CommandContext(ctx, step[0], step[1:]...)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = out, out
		if out == nil {
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(step, " "), err)
		}
	}
	return nil
}

// Start brings up PostgreSQL, the control plane with CRDs and webhooks, the
// manager, one tracker named "tracker" and the portal. Binaries must be built. On error
// everything started so far is stopped.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	s = &Stack{opts: opts, Trackers: map[string]*Tracker{}, LogDir: filepath.Join(opts.Dir, "logs")}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.startPostgres(ctx); err != nil {
		return nil, err
	}
	if err := s.startControlPlane(); err != nil {
		return nil, err
	}
	if err := s.StartManager(ctx); err != nil {
		return nil, err
	}
	if _, err := s.StartTracker(ctx, "tracker", opts.TrackerPort); err != nil {
		return nil, err
	}
	if err := s.StartPortal(ctx, opts.PortalPort); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) startPostgres(ctx context.Context) error {
	if s.opts.DatabaseURL != "" {
		s.DatabaseURL = s.opts.DatabaseURL
		s.logf("using PostgreSQL at $DATABASE_URL")
		return nil
	}
	s.pgDir = filepath.Join(s.opts.Dir, "postgres")
	_ = os.RemoveAll(s.pgDir)
	s.logf("starting a private PostgreSQL cluster in %s", s.pgDir)
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(s.opts.Root, "hack", "ensure-postgres.sh"), "start", s.pgDir)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		s.pgDir = ""
		return fmt.Errorf("starting PostgreSQL: %w\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	s.DatabaseURL = strings.TrimSpace(lines[len(lines)-1])
	if !strings.HasPrefix(s.DatabaseURL, "postgres") {
		return fmt.Errorf("ensure-postgres.sh printed no URL:\n%s", out.String())
	}
	return nil
}

func (s *Stack) startControlPlane() error {
	s.logf("starting etcd and kube-apiserver (bin/k8s)")
	s.Env = &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join(s.opts.Root, "bin", "k8s"),
		CRDDirectoryPaths:     []string{filepath.Join(s.opts.Root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(s.opts.Root, "config", "webhook")},
			LocalServingHost: "127.0.0.1",
		},
	}
	if err := trackingv1alpha1.AddToScheme(scheme.Scheme); err != nil {
		return err
	}
	logf.SetLogger(logr.Discard()) // envtest's own chatter; the processes log to LogDir
	cfg, err := s.Env.Start()
	if err != nil {
		s.Env = nil
		return fmt.Errorf("starting the control plane: %w", err)
	}
	s.Config = cfg
	if s.Client, err = client.New(cfg, client.Options{Scheme: scheme.Scheme}); err != nil {
		return err
	}
	user, err := s.Env.AddUser(envtest.User{Name: "developer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	s.Kubeconfig = filepath.Join(s.opts.Dir, "kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, kc, 0o600); err != nil {
		return err
	}
	s.RouteToken = randomHex(24)
	s.RouteTokenFile = filepath.Join(s.opts.Dir, "route-token")
	return os.WriteFile(s.RouteTokenFile, []byte(s.RouteToken+"\n"), 0o600)
}

// StartManager starts (or restarts) the manager and waits until its route
// server serves a table.
func (s *Stack) StartManager(ctx context.Context) error {
	if s.managerPort.route == 0 {
		for _, p := range []*int{&s.managerPort.metrics, &s.managerPort.health, &s.managerPort.route} {
			port, err := FreePort()
			if err != nil {
				return err
			}
			*p = port
		}
		s.RouteURL = fmt.Sprintf("http://127.0.0.1:%d", s.managerPort.route)
	}
	args := []string{
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(s.managerPort.metrics),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(s.managerPort.health),
		"--webhook-port=" + strconv.Itoa(s.Env.WebhookInstallOptions.LocalServingPort),
		"--webhook-cert-dir=" + s.Env.WebhookInstallOptions.LocalServingCertDir,
		"--cert-rotation=false", // envtest installed the webhook configuration with its own certificate
		"--route-listen=127.0.0.1:" + strconv.Itoa(s.managerPort.route),
		"--route-token-file=" + s.RouteTokenFile,
	}
	if s.opts.ManagerPprof {
		if s.ManagerPprofURL == "" {
			port, err := FreePort()
			if err != nil {
				return err
			}
			s.ManagerPprofURL = fmt.Sprintf("http://127.0.0.1:%d", port)
		}
		args = append(args, "--pprof-bind-address="+strings.TrimPrefix(s.ManagerPprofURL, "http://"))
	}
	s.logf("starting the manager (routes on %s, webhook on 127.0.0.1:%d)", s.RouteURL, s.Env.WebhookInstallOptions.LocalServingPort)
	p, err := startProc("manager", s.LogDir, []string{"KUBECONFIG=" + s.Kubeconfig}, s.Bin("manager"), args...)
	if err != nil {
		return err
	}
	s.Manager = p
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := waitHTTP(wctx, p, fmt.Sprintf("http://127.0.0.1:%d/readyz", s.managerPort.health), nil); err != nil {
		return fmt.Errorf("manager not ready: %w", err)
	}
	return waitHTTP(wctx, p, s.RouteURL+"/v1/snapshot", http.Header{"Authorization": {"Bearer " + s.RouteToken}})
}

// StopManager stops the manager gracefully.
func (s *Stack) StopManager() error { return s.Manager.Stop(30 * time.Second) }

// StartTracker starts a tracker (or restarts one by name, keeping its port
// and snapshot file) and waits until it is ready. port 0 picks a free one.
func (s *Stack) StartTracker(ctx context.Context, name string, port int) (*Tracker, error) {
	t := s.Trackers[name]
	if t == nil {
		p, err := portOr(port)
		if err != nil {
			return nil, err
		}
		t = &Tracker{port: p, URL: fmt.Sprintf("http://127.0.0.1:%d", p), SnapshotFile: filepath.Join(s.opts.Dir, name+"-snapshot.json")}
	}
	s.logf("starting %s on %s", name, t.URL)
	p, err := startProc(name, s.LogDir, []string{"DATABASE_URL=" + s.DatabaseURL}, s.Bin("tracker"),
		"--listen=127.0.0.1:"+strconv.Itoa(t.port),
		"--route-server="+s.RouteURL,
		"--route-token-file="+s.RouteTokenFile,
		"--snapshot-file="+t.SnapshotFile,
		"--spool-dir="+filepath.Join(s.opts.Dir, name+"-spool"),
	)
	if err != nil {
		return nil, err
	}
	t.Proc = p
	s.Trackers[name] = t
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := waitHTTP(wctx, p, t.URL+"/readyz", nil); err != nil {
		return nil, fmt.Errorf("%s not ready: %w", name, err)
	}
	return t, nil
}

// Kubectl runs bin/k8s/kubectl against the stack and returns its combined output.
func (s *Stack) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.opts.Root, "bin", "k8s", "kubectl"), append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// WriteEnv writes Dir/env: shell-sourceable KEY=value lines (SPEC §6).
func (s *Stack) WriteEnv(extra map[string]string) (string, error) {
	var b strings.Builder
	kv := []struct{ k, v string }{
		{"KUBECONFIG", s.Kubeconfig},
		{"TRACKER_URL", s.Trackers["tracker"].URL},
		{"DATABASE_URL", s.DatabaseURL},
		{"ROUTE_SERVER_URL", s.RouteURL},
	}
	if s.Portal != nil {
		kv = append(kv, struct{ k, v string }{"PORTAL_URL", s.PortalURL}, struct{ k, v string }{"PORTAL_TOKEN", s.PortalToken})
	}
	for k, v := range extra {
		kv = append(kv, struct{ k, v string }{k, v})
	}
	for _, e := range kv {
		fmt.Fprintf(&b, "%s=%s\n", e.k, shellQuote(e.v))
	}
	path := filepath.Join(s.opts.Dir, "env")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// Stop stops everything in reverse order: trackers (draining their queues),
// the manager, the control plane, PostgreSQL.
func (s *Stack) Stop() error {
	var errs []error
	if s.Portal != nil {
		s.logf("stopping the portal")
		errs = append(errs, s.Portal.Stop(30*time.Second))
		s.Portal = nil
	}
	for name, t := range s.Trackers {
		if t.Proc != nil {
			s.logf("stopping %s", name)
			errs = append(errs, t.Stop(30*time.Second))
		}
	}
	if s.Manager != nil {
		s.logf("stopping the manager")
		errs = append(errs, s.Manager.Stop(30*time.Second))
	}
	if s.Env != nil {
		s.logf("stopping kube-apiserver and etcd")
		errs = append(errs, s.Env.Stop())
		s.Env = nil
	}
	if s.pgDir != "" {
		s.logf("stopping PostgreSQL")
		cmd := exec.Command("bash", filepath.Join(s.opts.Root, "hack", "ensure-postgres.sh"), "stop", s.pgDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("stopping PostgreSQL: %w: %s", err, out))
		}
		s.pgDir = ""
	}
	_ = os.Remove(filepath.Join(s.opts.Dir, "env"))
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shellQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n'\"$`\\!*?&;|<>(){}[]#~") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// RestartPostgres stops the stack's private PostgreSQL and starts it again
// on the same port and data (a storage outage of a few seconds).
func (s *Stack) RestartPostgres(ctx context.Context) error {
	if s.pgDir == "" {
		return errors.New("PostgreSQL is external ($DATABASE_URL): the stack cannot restart it")
	}
	script := filepath.Join(s.opts.Root, "hack", "ensure-postgres.sh")
	for _, step := range []string{"stop", "start"} {
		if out, err := exec.CommandContext(ctx, "bash", script, step, s.pgDir).CombinedOutput(); err != nil {
			return fmt.Errorf("PostgreSQL %s: %w: %s", step, err, out)
		}
	}
	return nil
}
