// Package certs gives the manager's webhook server a serving certificate
// without cert-manager (SPEC §9).
//
// open-policy-agent/cert-controller's rotator issues a CA and a serving
// certificate into one Secret, renews them before they expire, and writes the
// CA into the ValidatingWebhookConfiguration's caBundle. Files writes the
// Secret's tls.crt and tls.key into the webhook server's certificate
// directory — an emptyDir — on every replica, as soon as the watch delivers
// them: no replica waits for the kubelet to project a Secret volume (up to a
// minute or two), and controller-runtime's certwatcher picks up each renewal.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Options name what the certificate is for and where it goes.
type Options struct {
	// Namespace holds the Secret and the webhook Service: the manager's own.
	Namespace string
	// SecretName is the Secret the rotator keeps the CA and the serving
	// certificate in. It must exist (the manifests ship it empty): the
	// rotator updates it and never creates it, so RBAC can name it.
	SecretName string
	// ServiceName is the webhook Service: the certificate is for
	// <service>.<namespace>.svc (and .svc.cluster.local).
	ServiceName string
	// ExtraDNSNames are more names for the certificate (tests: localhost).
	ExtraDNSNames []string
	// WebhookConfigName is the ValidatingWebhookConfiguration whose webhooks
	// get the CA as caBundle.
	WebhookConfigName string
	// CertDir is the webhook server's certificate directory (tls.crt, tls.key).
	CertDir string
}

// Setup adds the rotator and the file writer to mgr. The returned channel
// closes once this replica's certificate files are in place and the webhook
// configuration carries the CA: register the webhooks then, not before (the
// webhook server loads its certificate when it starts).
func Setup(mgr manager.Manager, o Options, log logr.Logger) (<-chan struct{}, error) {
	if o.Namespace == "" || o.SecretName == "" || o.ServiceName == "" || o.WebhookConfigName == "" || o.CertDir == "" {
		return nil, fmt.Errorf("certificate rotation needs a namespace, a Secret, a Service, a webhook configuration and a directory: %+v", o)
	}
	if err := os.MkdirAll(o.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the webhook certificate directory: %w", err)
	}
	ready := make(chan struct{})
	dns := o.ServiceName + "." + o.Namespace + ".svc"
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
		CertDir:        o.CertDir,
		CAName:         "promo-operator-webhook-ca",
		CAOrganization: "promo-operator",
		DNSName:        dns,
		ExtraDNSNames:  append([]string{dns + ".cluster.local"}, o.ExtraDNSNames...),
		IsReady:        ready,
		Webhooks:       []rotator.WebhookInfo{{Name: o.WebhookConfigName, Type: rotator.Validating}},
		// Every replica serves webhooks, so every replica runs the rotator
		// and waits for its own files and the injected CA. Two replicas
		// issuing at once is settled by the Secret's resourceVersion: the
		// loser's update conflicts, it retries and finds the winner's
		// certificate valid.
		RequireLeaderElection: false,
		// Inject the CA only once this replica's files are in place.
		EnableReadinessCheck: true,
		ExtKeyUsages:         &[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("adding the certificate rotator: %w", err)
	}
	f := &Files{Manager: mgr, Namespace: o.Namespace, SecretName: o.SecretName, Dir: o.CertDir, Log: log}
	if err := mgr.Add(f); err != nil {
		return nil, err
	}
	return ready, nil
}

// Files writes the serving certificate and key from the Secret into Dir and
// rewrites them whenever the Secret changes. It runs on every replica.
type Files struct {
	Manager    manager.Manager
	Namespace  string
	SecretName string
	Dir        string
	Log        logr.Logger
}

// NeedLeaderElection is false: every replica serves webhooks.
func (f *Files) NeedLeaderElection() bool { return false }

// Start watches the one Secret (a field selector on its name, so the watch
// is as narrow as the RBAC) until ctx ends.
func (f *Files) Start(ctx context.Context) error {
	c, err := cache.New(f.Manager.GetConfig(), cache.Options{
		Scheme: f.Manager.GetScheme(),
		Mapper: f.Manager.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {
			Namespaces: map[string]cache.Config{f.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", f.SecretName),
		}},
	})
	if err != nil {
		return fmt.Errorf("creating the certificate Secret's cache: %w", err)
	}
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	write := func(obj any) {
		if s, ok := obj.(*corev1.Secret); ok {
			if err := f.write(s); err != nil {
				f.Log.Error(err, "Failed to write the webhook serving certificate", "dir", f.Dir)
			}
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    write,
		UpdateFunc: func(_, cur any) { write(cur) },
	}); err != nil {
		return err
	}
	return c.Start(ctx)
}

// write puts tls.key, then tls.crt into Dir, each by an atomic rename, when
// they form a valid pair and differ from what is there.
func (f *Files) write(s *corev1.Secret) error {
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return nil // not issued yet
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return fmt.Errorf("secret %s/%s holds no valid key pair: %w", s.Namespace, s.Name, err)
	}
	changed := false
	for _, file := range []struct {
		name string
		data []byte
	}{{corev1.TLSPrivateKeyKey, key}, {corev1.TLSCertKey, crt}} {
		path := filepath.Join(f.Dir, file.name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, file.data) {
			continue
		}
		if err := writeAtomic(path, file.data); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		f.Log.Info("Wrote the webhook serving certificate", "dir", f.Dir, "notAfter", pair.Leaf.NotAfter)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone after the rename; cleanup on failure
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
