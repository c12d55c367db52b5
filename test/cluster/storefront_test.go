package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRouteStreamTLSAndSampleStorefront: the shipped trackers follow the
// route server over https with the manager's CA (the stream carries
// Storefront signing secrets), the routes port refuses plaintext (the
// network-policy scenario's probe, plain HTTP with the policy removed, gets
// TLS's 400), and the sample Storefront of config/samples reads Ready.
func TestRouteStreamTLSAndSampleStorefront(t *testing.T) {
	args := kubectl(t, "get", "statefulset", "promo-operator-tracker", "-n", system,
		"-o", `jsonpath={.spec.template.spec.containers[0].args}`)
	if !strings.Contains(args, "--route-server=https://") || !strings.Contains(args, "--route-ca-file=") {
		t.Fatalf("trackers do not follow the routes over TLS: %s", args)
	}
	mounts := kubectl(t, "get", "statefulset", "promo-operator-tracker", "-n", system,
		"-o", `jsonpath={.spec.template.spec.volumes[?(@.name=="route-ca")].secret.items[*].key}`)
	if mounts != "ca.crt" {
		t.Fatalf("trackers must mount only ca.crt of the serving certificate Secret, got %q", mounts)
	}
	var cond string
	took := eventually(t, "the sample Storefront shop/acme Ready", 2*time.Minute, func() string {
		cond = kubectl(t, "get", "storefront", "acme", "-n", "shop",
			"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}`)
		if cond != "True/Valid" {
			return cond
		}
		return ""
	})
	// Neither status nor events show the sample's secret value.
	all := kubectl(t, "get", "storefront", "acme", "-n", "shop", "-o", "yaml") + kubectl(t, "get", "events", "-n", "shop")
	if strings.Contains(all, "sample-shopify-signing-secret") {
		t.Fatal("the signing secret appears in the Storefront's status or events")
	}
	fmt.Printf("cluster: route stream https with --route-ca-file (ca.crt only); sample Storefront Ready=%s in %s\n", cond, took.Round(10*time.Millisecond))
}
