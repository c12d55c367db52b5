package routeserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// TLSFiles is the route server's serving certificate: files the manager
// keeps current (internal/certs writes the webhook certificate, whose DNS
// names include the routes Service's; cert-manager mounts its own). A
// renewal is picked up without a restart (certwatcher).
type TLSFiles struct {
	CertFile, KeyFile string
	// Ready, when not nil, closes once the files are in place; the server
	// listens only then.
	Ready <-chan struct{}
}

// listen opens the route listener: TLS-only when s.TLS is set. It returns
// nil, nil when ctx ended while waiting for the certificate.
func (s *Server) listen(ctx context.Context) (net.Listener, error) {
	if s.TLS == nil {
		return net.Listen("tcp", s.Addr)
	}
	if s.TLS.Ready != nil {
		select {
		case <-s.TLS.Ready:
		case <-ctx.Done():
			return nil, nil
		}
	}
	cw, err := certwatcher.New(s.TLS.CertFile, s.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the routes serving certificate: %w", err)
	}
	go func() {
		if err := cw.Start(ctx); err != nil {
			s.Log.Error(err, "Routes serving certificate watcher stopped")
		}
	}()
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(l, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate}), nil
}
