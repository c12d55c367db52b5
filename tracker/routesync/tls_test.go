package routesync

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/tracker"
)

type countingWriter struct{ n atomic.Int32 }

func (c *countingWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "TLS handshake error") {
		c.n.Add(1)
	}
	return len(p), nil
}

// An https route server is verified against --route-ca-file, read again on
// each reconnect: a wrong CA refuses the server; the right one written over
// it is picked up without a restart. The saved snapshot, holding storefront
// secrets, is readable by its owner only.
func TestTLSWithCAFileReloadedAndSnapshotPrivate(t *testing.T) {
	snap := snapshot("v1", "AAA")
	snap.Storefronts = []routing.Storefront{{Ref: "shop/acme", Platform: routing.PlatformShopify, Shop: "acme.myshopify.com",
		Secret: []byte("shpss_sample"), OfferRefs: []string{"shop/o"}, Amount: "subtotal"}}
	fs := &fakeServer{snap: snap, push: make(chan Message), token: "tok"}
	srv := httptest.NewUnstartedServer(fs)
	handshakeErrors := &countingWriter{}
	srv.Config.ErrorLog = log.New(handshakeErrors, "", 0)
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	writeCert := func(der []byte) {
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if err := os.WriteFile(caFile+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(caFile+".tmp", caFile); err != nil {
			t.Fatal(err)
		}
	}
	writeCert(otherCA(t)) // httptest's servers share one certificate: another CA
	file := filepath.Join(dir, "snap.json")
	routes := tracker.NewRoutes(nil)
	c := &Client{URL: srv.URL, Token: "tok", CAFile: caFile, SnapshotFile: file, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, SaveInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx, routes) }()

	waitFor(t, "handshakes refused with the wrong CA", func() bool { return handshakeErrors.n.Load() >= 2 })
	if routes.Load() != nil || fs.conns.Load() != 0 {
		t.Fatal("the client accepted a server its CA file does not vouch for")
	}
	writeCert(srv.Certificate().Raw)
	waitFor(t, "snapshot over TLS after the CA file changed", func() bool {
		return routes.Load() != nil && routes.Load().Storefront("shop/acme") != nil
	})
	waitFor(t, "snapshot file", func() bool {
		saved, err := tracker.LoadSnapshot(file)
		return err == nil && saved.Storefront("shop/acme") != nil
	})
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file mode %v, want 0600: it holds signing secrets", st.Mode().Perm())
	}
}

func TestCAFileWithoutCertificateIsAnError(t *testing.T) {
	f := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(f, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Client{CAFile: f}
	if _, err := c.httpClient(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
	c.CAFile = filepath.Join(t.TempDir(), "missing")
	if _, err := c.httpClient(); err == nil {
		t.Fatal("a missing CA file must fail the connection")
	}
}

func otherCA(t *testing.T) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
