// Package pgtest gives tests a real PostgreSQL: $DATABASE_URL when set,
// otherwise a private throwaway cluster started with hack/ensure-postgres.sh
// (which installs Debian's postgresql package when missing and root). Each
// caller gets a fresh database of its own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server for tests.
type Server struct {
	URL string // base URL
	dir string // private cluster directory, empty for $DATABASE_URL
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Start returns $DATABASE_URL's server or starts a private cluster.
func Start() (*Server, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return &Server{URL: u}, nil
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "hack", "ensure-postgres.sh"), "start", dir).CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting PostgreSQL: %w\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return &Server{URL: strings.TrimSpace(lines[len(lines)-1]), dir: dir}, nil
}

// Stop stops and removes a private cluster.
func (s *Server) Stop() error {
	if s.dir == "" {
		return nil
	}
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "hack", "ensure-postgres.sh"), "stop", s.dir).CombinedOutput()
	_ = os.RemoveAll(s.dir)
	if err != nil {
		return fmt.Errorf("stopping PostgreSQL: %w\n%s", err, out)
	}
	return nil
}

// Restart stops and starts a private cluster on the same port (for outage tests).
func (s *Server) StopServer() error {
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "hack", "ensure-postgres.sh"), "stop", s.dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// StartServer starts a stopped private cluster again.
func (s *Server) StartServer() error {
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "hack", "ensure-postgres.sh"), "start", s.dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// Private reports whether the server is a private cluster the test may stop.
func (s *Server) Private() bool { return s.dir != "" }

// FreshDatabase creates a uniquely named database and returns its URL and a
// function dropping it.
func (s *Server) FreshDatabase(ctx context.Context) (string, func(), error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(context.Background(), s.URL)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}
