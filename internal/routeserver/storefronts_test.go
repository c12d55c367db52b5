package routeserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

var (
	testServer *Server
	testMgr    manager.Manager
	logs       lockedBuffer
)

// lockedBuffer collects every log line of the route server and of
// controller-runtime in this process, at every verbosity.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) write(prefix, args string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintln(&b.buf, prefix, args)
}

func (b *lockedBuffer) Reset() { b.mu.Lock(); b.buf.Reset(); b.mu.Unlock() }

func (b *lockedBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

func capturedLogger() logr.Logger {
	return funcr.New(logs.write, funcr.Options{Verbosity: 10})
}

func storefrontObjs(ns, secret string) []client.Object {
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		offer(ns, "summer", 0, true),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme-webhook"}, Data: map[string][]byte{"secret": []byte(secret)}},
		&trackingv1alpha1.Storefront{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"},
			Spec: trackingv1alpha1.StorefrontSpec{Platform: trackingv1alpha1.PlatformShopify, Shop: ns + ".myshopify.com",
				SigningSecretRef: trackingv1alpha1.SecretKeyRef{Name: "acme-webhook", Key: "secret"},
				OfferRefs:        []trackingv1alpha1.LocalOfferReference{{Name: "summer"}}}},
	}
}

var nextOfferID = struct {
	sync.Mutex
	n int64
}{n: 9000}

func createStorefront(t *testing.T, ns, secret string) {
	t.Helper()
	objs := storefrontObjs(ns, secret)
	nextOfferID.Lock()
	nextOfferID.n++
	objs[1].(*trackingv1alpha1.Offer).Spec.ID = nextOfferID.n
	nextOfferID.Unlock()
	mustCreate(t, objs...)
}

// untilStorefront reads the stream, applying messages, until cond holds.
func untilStorefront(t *testing.T, s *stream, table *routing.Table, cond func(*routing.Table) bool) *routing.Table {
	t.Helper()
	for !cond(table) {
		m := s.next(t)
		switch m.Type {
		case "snapshot":
			table = routing.NewTable(*m.Snapshot)
		case "delta":
			table = table.Apply(*m.Delta)
		}
	}
	return table
}

func TestStorefrontPublishedRotatedDeleted(t *testing.T) {
	ctx := context.Background()
	const ns, first, second = "shop-a", "first-SECRET-value-1", "rotated-SECRET-value-2"
	s := connect(t)
	createStorefront(t, ns, first)
	ref := ns + "/acme"
	table := untilStorefront(t, s, nil, func(tb *routing.Table) bool {
		return tb != nil && tb.Storefront(ref) != nil
	})
	sf := table.Storefront(ref)
	if string(sf.Secret) != first || sf.Shop != ns+".myshopify.com" || sf.Platform != "shopify" || sf.Amount != "subtotal" ||
		len(sf.OfferRefs) != 1 || sf.OfferRefs[0] != ns+"/summer" {
		t.Fatalf("published storefront %v secret %q", sf, sf.Secret)
	}

	// A rotation: a delta with the new secret.
	var sec corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "acme-webhook"}, &sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["secret"] = []byte(second)
	if err := k8s.Update(ctx, &sec); err != nil {
		t.Fatal(err)
	}
	table = untilStorefront(t, s, table, func(tb *routing.Table) bool {
		return tb.Storefront(ref) != nil && string(tb.Storefront(ref).Secret) == second
	})

	// The secret emptied: not Ready, so deleted from the table; back again.
	sec.Data["secret"] = nil
	if err := k8s.Update(ctx, &sec); err != nil {
		t.Fatal(err)
	}
	table = untilStorefront(t, s, table, func(tb *routing.Table) bool { return tb.Storefront(ref) == nil })
	sec.Data["secret"] = []byte(second)
	if err := k8s.Update(ctx, &sec); err != nil {
		t.Fatal(err)
	}
	table = untilStorefront(t, s, table, func(tb *routing.Table) bool { return tb.Storefront(ref) != nil })

	// The offer deleted: OfferNotFound, unpublished.
	if err := k8s.Delete(ctx, offer(ns, "summer", 0, true)); err != nil {
		t.Fatal(err)
	}
	table = untilStorefront(t, s, table, func(tb *routing.Table) bool { return tb.Storefront(ref) == nil })

	// Back, then the Storefront deleted: DeletedStorefronts.
	o := offer(ns, "summer", 0, true)
	nextOfferID.Lock()
	nextOfferID.n++
	o.Spec.ID = nextOfferID.n
	nextOfferID.Unlock()
	mustCreate(t, o)
	table = untilStorefront(t, s, table, func(tb *routing.Table) bool { return tb.Storefront(ref) != nil })
	if err := k8s.Delete(ctx, &trackingv1alpha1.Storefront{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"}}); err != nil {
		t.Fatal(err)
	}
	var deleted bool
	for !deleted {
		m := s.next(t)
		if m.Type == "delta" {
			for _, r := range m.Delta.DeletedStorefronts {
				deleted = deleted || r == ref
			}
			table = table.Apply(*m.Delta)
		}
	}
	if table.Storefront(ref) != nil {
		t.Fatal("deleted storefront still in the table")
	}

	out := logs.String()
	if len(out) == 0 {
		t.Fatal("no log output captured: the capture is broken")
	}
	for _, secret := range []string{first, second} {
		if bytes.Contains([]byte(out), []byte(secret)) {
			t.Fatalf("a signing secret appears in the log output")
		}
	}
}

func TestStorefrontSecretsOnlyToLoopbackOrTLS(t *testing.T) {
	const ns = "shop-b"
	createStorefront(t, ns, "plaintext-guard-secret")
	ref := ns + "/acme"
	snapshotFrom := func(remote string) routing.Snapshot {
		req := httptest.NewRequest(http.MethodGet, "/v1/snapshot", nil)
		req.RemoteAddr = remote
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		testServer.Handler().ServeHTTP(rec, req)
		var snap routing.Snapshot
		if rec.Code != http.StatusOK {
			return snap
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &snap); err != nil {
			t.Fatal(err)
		}
		return snap
	}
	has := func(snap routing.Snapshot) bool {
		for _, sf := range snap.Storefronts {
			if sf.Ref == ref {
				return true
			}
		}
		return false
	}
	poll.Until(t, 30*time.Second, func() (bool, string) {
		return has(snapshotFrom("127.0.0.1:40000")), "a loopback client never saw the storefront"
	})
	if !has(snapshotFrom("[::1]:40000")) {
		t.Fatal("an IPv6 loopback client gets no storefronts")
	}
	plain := snapshotFrom("10.1.2.3:40000")
	if has(plain) || len(plain.Storefronts) != 0 || plain.Version == "" {
		t.Fatalf("a plaintext non-loopback client got storefronts (or no table): %d storefronts, version %q", len(plain.Storefronts), plain.Version)
	}
	// The stream too: its snapshot has no storefronts.
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodGet, "/v1/routes", nil).WithContext(ctx)
	req.RemoteAddr = "10.1.2.3:40001"
	req.Header.Set("Authorization", "Bearer "+token)
	rec := &firstLine{ResponseRecorder: httptest.NewRecorder(), cancel: cancel}
	testServer.Handler().ServeHTTP(rec, req)
	var m Message
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.Snapshot == nil {
		t.Fatalf("stream's first line: %v %q", err, rec.Body.String())
	}
	if len(m.Snapshot.Storefronts) != 0 || bytes.Contains(rec.Body.Bytes(), []byte("plaintext-guard-secret")) {
		t.Fatal("a plaintext non-loopback stream carried storefronts")
	}
}

// firstLine records a stream until its first flushed line, then ends it.
type firstLine struct {
	*httptest.ResponseRecorder
	cancel context.CancelFunc
}

func (f *firstLine) Flush() { f.ResponseRecorder.Flush(); f.cancel() }

func TestTLSRoutes(t *testing.T) {
	const ns = "shop-c"
	createStorefront(t, ns, "tls-secret-value")
	dir := t.TempDir()
	caPEM := writeServingCert(t, dir)
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	tlsServer := &Server{Addr: addr, Token: token, Cache: mgrCache, SecretReader: testMgr.GetAPIReader(), Log: capturedLogger(),
		TLS: &TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Ready: ready}}
	if err := testMgr.Add(tlsServer); err != nil {
		t.Fatal(err)
	}
	close(ready)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(c *http.Client, url string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return c.Do(req)
	}
	poll.Until(t, 30*time.Second, func() (bool, string) {
		resp, err := get(hc, "https://"+addr+"/v1/snapshot")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var snap routing.Snapshot
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			return false, resp.Status
		}
		for _, sf := range snap.Storefronts {
			if sf.Ref == ns+"/acme" && string(sf.Secret) == "tls-secret-value" {
				return true, ""
			}
		}
		return false, "a TLS client from a non-loopback address would get storefronts; this one never saw shop-c/acme"
	})
	// Plaintext to the TLS port: no table.
	resp, err := get(http.DefaultClient, "http://"+addr+"/v1/snapshot")
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the TLS route port answered a plaintext request")
		}
	}
	// A client not trusting the CA is refused.
	if resp, err := get(&http.Client{Transport: &http.Transport{}}, "https://"+addr+"/v1/snapshot"); err == nil {
		resp.Body.Close()
		t.Fatal("the route server's certificate verified against the system roots")
	}
}

// writeServingCert writes a CA-signed certificate for 127.0.0.1 into dir as
// tls.crt and tls.key and returns the CA's PEM.
func writeServingCert(t *testing.T, dir string) []byte {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "routes"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}
