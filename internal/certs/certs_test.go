package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pair(t *testing.T, cn string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func secret(crt, key []byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cert"},
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
}

// TestFilesWrite: nothing before the rotator issued, the pair once it did,
// the new pair after a renewal, and never a pair that does not match.
func TestFilesWrite(t *testing.T) {
	dir := t.TempDir()
	f := &Files{Dir: dir, Log: logr.Discard()}
	read := func() (string, string) {
		c, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
		k, _ := os.ReadFile(filepath.Join(dir, "tls.key"))
		return string(c), string(k)
	}
	if err := f.write(secret(nil, nil)); err != nil {
		t.Fatal(err)
	}
	if c, k := read(); c != "" || k != "" {
		t.Fatal("files written from an empty Secret")
	}
	crt1, key1 := pair(t, "one")
	if err := f.write(secret(crt1, key1)); err != nil {
		t.Fatal(err)
	}
	if c, k := read(); c != string(crt1) || k != string(key1) {
		t.Fatal("first pair not written")
	}
	crt2, key2 := pair(t, "two")
	if err := f.write(secret(crt2, key1)); err == nil {
		t.Fatal("a mismatched pair was accepted")
	}
	if c, _ := read(); c != string(crt1) {
		t.Fatal("a mismatched pair replaced the files")
	}
	if err := f.write(secret(crt2, key2)); err != nil {
		t.Fatal(err)
	}
	if c, k := read(); c != string(crt2) || k != string(key2) {
		t.Fatal("renewed pair not written")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
