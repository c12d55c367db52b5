package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/testutil/fixtures"
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

// TestShopifyOrderThroughTracker: a Storefront applied on the cluster
// reaches the trackers over the TLS route stream with its secret, and a
// signed Shopify orders/create delivered through the tracker Service records
// one conversion with source shopify; a wrong signature is refused 401.
func TestShopifyOrderThroughTracker(t *testing.T) {
	const ns, secret = "cl-shop", "cluster-shopify-secret"
	namespace(t, ns)
	apply(t, fixtures.OfferYAML(ns, "shopoffer", 801, true))
	apply(t, fixtures.PromoCodeYAML(ns, "shop1", "SHOPIFY801", "shopoffer", 41, ""))
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: %[1]s}
stringData: {secret: %[2]s}
---
apiVersion: tracking.promocodes.dev/v1alpha1
kind: Storefront
metadata: {name: acme, namespace: %[1]s}
spec:
  platform: shopify
  shop: %[1]s.myshopify.com
  signingSecretRef: {name: hook, key: secret}
  offerRefs: [{name: shopoffer}]
`, ns, secret))
	servable(t, "SHOPIFY801", 801)
	order := strconv.FormatInt(time.Now().UnixNano(), 10) // a Shopify order id is a JSON number
	body := []byte(fmt.Sprintf(`{"id": %s, "currency": "EUR", "current_subtotal_price": "40.00", "current_total_price": "45.00", "discount_codes": [{"code": "shopify801"}]}`,
		order))
	post := func(sig string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, trackerURL+"/integrations/shopify/"+ns+"/acme", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Shopify-Topic", "orders/create")
		req.Header.Set("X-Shopify-Shop-Domain", ns+".myshopify.com")
		req.Header.Set("X-Shopify-Hmac-Sha256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	good := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	// Every tracker behind the Service must know the Storefront: poll until
	// several deliveries in a row are accepted (the order is recorded once).
	var last string
	took := eventually(t, "every tracker accepts the signed order", 2*time.Minute, func() string {
		for range 6 {
			if code, b := post(good); code != http.StatusOK {
				last = fmt.Sprintf("%d %s", code, b)
				return last
			}
		}
		return ""
	})
	if code, b := post("d3Jvbmc="); code != http.StatusUnauthorized {
		t.Fatalf("a wrong signature: %d %s", code, b)
	}
	var n int
	var source, amount string
	if err := db.QueryRow(context.Background(), `SELECT count(*), min(source), min(amount::text) FROM conversions WHERE adv_order_id = $1 AND offer_id = 801`,
		order).Scan(&n, &source, &amount); err != nil {
		t.Fatal(err)
	}
	if n != 1 || source != "shopify" || amount != "40.00" {
		t.Fatalf("rows for order %s: %d, source %q, amount %q", order, n, source, amount)
	}
	fmt.Printf("cluster: shopify orders/create through the tracker Service: 1 row source=shopify amount=%s; all trackers accepted it %s after the code was servable; bad signature 401\n",
		amount, took.Round(10*time.Millisecond))
}
