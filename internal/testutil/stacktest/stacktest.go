// Package stacktest starts the whole local stack (internal/devstack: control
// plane, PostgreSQL, manager, tracker, portal) for a test: built once, in the
// test's own directory, stopped when the test ends.
package stacktest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"promocodes.dev/promo-operator/internal/devstack"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	root, _ := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	return root
}

// Start builds the binaries and starts a stack for t. Unset options default
// to the repository root, a directory of t's and the test's stderr; the stack
// is stopped, and a failure to stop reported, when t ends.
func Start(t testing.TB, ctx context.Context, opts devstack.Options) *devstack.Stack {
	t.Helper()
	if opts.Root == "" {
		opts.Root = Root()
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Out == nil {
		opts.Out = os.Stderr
	}
	if err := devstack.Build(ctx, opts.Root, nil); err != nil {
		t.Fatal(err)
	}
	s, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}
