package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

// TestPodSecurity: promo-system enforces the restricted profile, every pod of
// ours was admitted under it, and trackers carry no service-account token.
func TestPodSecurity(t *testing.T) {
	labels := kubectl(t, "get", "namespace", system, "-o", `jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}`)
	if labels != "restricted" {
		t.Fatalf("namespace %s enforces %q, want restricted", system, labels)
	}
	privileged := `apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: promo-system}
spec:
  containers:
  - {name: c, image: promo-operator/pause:dev, securityContext: {privileged: true}}
`
	out, err := kubectlCtx(ctxFor(t, time.Minute), strings.NewReader(privileged), "create", "--dry-run=server", "-f", "-")
	if err == nil || !strings.Contains(out, `violates PodSecurity "restricted`) {
		t.Fatalf("a privileged pod must be refused in %s: %v %s", system, err, out)
	}
	pods := kubectl(t, "get", "pods", "-n", system, "-o",
		`jsonpath={range .items[*]}{.metadata.labels.app\.kubernetes\.io/name} {.status.phase} {.spec.automountServiceAccountToken} {.spec.volumes[*].name}{"\n"}{end}`)
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(pods), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "Running" {
			t.Errorf("pod not running: %q", line)
			continue
		}
		seen[f[0]]++
		if f[0] == "tracker" && (len(f) < 3 || f[2] != "false" || strings.Contains(line, "kube-api-access")) {
			t.Errorf("a tracker pod must carry no service-account token: %q", line)
		}
	}
	for _, app := range []string{"manager", "tracker", "portal"} {
		if seen[app] < 2 {
			t.Errorf("%d %s pods running under restricted, want 2: %v", seen[app], app, seen)
		}
	}
	// Every workload has a disruption budget, and every container resource requests.
	// disruptionsAllowed is computed by the disruption controller from Ready
	// pods, so it is polled (the outage scenario before may have left a
	// portal pod unready for a moment).
	eventually(t, "every workload has a disruption budget allowing one disruption", time.Minute, func() string {
		pdbs := kubectl(t, "get", "pdb", "-n", system, "-o", `jsonpath={range .items[*]}{.spec.selector.matchLabels.app\.kubernetes\.io/name}={.spec.maxUnavailable}/{.status.disruptionsAllowed} {end}`)
		for _, app := range []string{"manager", "tracker", "portal"} {
			if !strings.Contains(pdbs, app+"=1/1") {
				return app + ": " + pdbs
			}
		}
		return ""
	})
	requests := kubectl(t, "get", "pods", "-n", system, "-o", `jsonpath={range .items[*].spec.containers[*]}{.name}:{.resources.requests.cpu}/{.resources.requests.memory} {end}`)
	for _, c := range strings.Fields(requests) {
		if strings.HasSuffix(c, ":/") {
			t.Errorf("container without resource requests: %s", c)
		}
	}
	fmt.Printf("cluster: pod-security enforce=restricted privileged pod refused; running under it: %v\n", seen)
}

// TestNetworkPolicy: a pod that is not a tracker cannot reach the route
// server (kube-router enforces config/network-policy). The same pod reaches
// the same manager pod's metrics port, which the policy leaves open, and it
// reaches the route server too while the policy is removed — so the refusal
// is the policy, not the network. Trackers reach it: a new code is routed.
func TestNetworkPolicy(t *testing.T) {
	image := probeImage(t)
	ip := strings.Fields(kubectl(t, "get", "pods", "-n", system, "-l", "app.kubernetes.io/name=manager",
		"-o", "jsonpath={.items[*].status.podIP}"))
	if len(ip) == 0 {
		t.Fatal("no manager pod IP")
	}
	metrics, routes := "http://"+ip[0]+":8080/metrics", "http://"+ip[0]+":8090/"
	reached := runProbe(t, "np-metrics", image, metrics)
	if !strings.HasPrefix(reached, "reached") {
		t.Fatalf("the probe pod should reach the open metrics port: %s", reached)
	}
	denied := runProbe(t, "np-routes", image, routes)
	if !strings.HasPrefix(denied, "unreachable") {
		t.Fatalf("a pod that is not a tracker reached the route server: %s", denied)
	}

	const policy = "networkpolicy/promo-operator-allow-trackers-to-routes"
	saved := kubectl(t, "get", policy, "-n", system, "-o", "json")
	kubectl(t, "delete", policy, "-n", system)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if _, err := kubectlCtx(context.Background(), strings.NewReader(stripServerFields(t, saved)), "create", "-f", "-"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(restore)
	var open string
	eventually(t, "the route server reachable without the policy", time.Minute, func() string {
		if open = runProbe(t, "np-routes-open", image, routes); !strings.HasPrefix(open, "reached") {
			return open
		}
		return ""
	})
	// The routes port is TLS-only: the probe's plaintext GET gets TLS's
	// "client sent an HTTP request to an HTTPS server" 400, never a table.
	if open != "reached 400" {
		t.Errorf("plaintext to the routes port: %q, want TLS's reached 400", open)
	}
	restore()
	eventually(t, "the route server closed again with the policy", time.Minute, func() string {
		if out := runProbe(t, "np-routes-again", image, routes); !strings.HasPrefix(out, "unreachable") {
			return out
		}
		return ""
	})

	namespace(t, "cl-np")
	apply(t, fixtures.OfferYAML("cl-np", "np", 701, true))
	apply(t, fixtures.PromoCodeYAML("cl-np", "np1", "NETPOL1", "np", 31, ""))
	took := servable(t, "NETPOL1", 701)
	fmt.Printf("cluster: network-policy stranger->routes %q; without the policy %q; stranger->metrics %q; trackers synced a new code in %s\n",
		denied, open, reached, took.Round(10*time.Millisecond))
}

// probeImage builds test/cluster/probe into an image and loads it into the node.
func probeImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "probe")
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("go", "build", "-o", bin, "./test/cluster/probe")
	tar := filepath.Join(dir, "probe.tar")
	ref := lastLine(run("go", "run", "./hack/images", "-bin", bin, "-ref", "promo-operator/probe", "-out", tar))
	run("bash", "hack/cluster/load-images.sh", tar)
	return ref
}

// runProbe runs the probe in a restricted pod in promo-system and returns
// what it printed.
func runProbe(t *testing.T, name, image, target string) string {
	t.Helper()
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: promo-system, labels: {app.kubernetes.io/name: probe}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: probe
    image: %s
    args: [%q]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    resources: {requests: {cpu: 10m, memory: 16Mi}}
`, name, image, target)
	_, _ = kubectlCtx(context.Background(), nil, "delete", "pod", name, "-n", system, "--ignore-not-found", "--wait=true")
	apply(t, pod)
	t.Cleanup(func() {
		_, _ = kubectlCtx(context.Background(), nil, "delete", "pod", name, "-n", system, "--ignore-not-found", "--wait=false")
	})
	eventually(t, "probe pod "+name+" finished", 2*time.Minute, func() string {
		phase := jsonpath(t, "pod", name, system, "{.status.phase}")
		if phase != "Succeeded" && phase != "Failed" {
			return phase
		}
		return ""
	})
	return strings.TrimSpace(kubectl(t, "logs", name, "-n", system))
}
