// Package poll is the one polling helper of the tests: a condition is asked
// again, a little less often each time, until it holds or a deadline passes;
// then the test fails with the condition's own account of why not. Nothing
// is asserted about how long it took (timed assertions flake on shared
// machines): the timeout is only how long to wait before giving up.
package poll

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

const (
	firstInterval = 10 * time.Millisecond
	maxInterval   = 250 * time.Millisecond
)

// Until polls cond until it reports done and fails t, with cond's last
// reason, when timeout passes first.
func Until(t testing.TB, timeout time.Duration, cond func() (done bool, why string)) {
	t.Helper()
	var why string
	err := For(timeout, func() (bool, error) {
		var done bool
		done, why = cond()
		return done, nil
	})
	if err != nil {
		t.Fatalf("after %s: %s", timeout, why)
	}
}

// ErrTimeout is what For returns when the condition never held.
var ErrTimeout = errors.New("condition not met before the timeout")

// For polls cond until it reports done (nil), fails (its error, at once), or
// timeout passes (ErrTimeout, wrapped with the timeout).
func For(timeout time.Duration, cond func() (done bool, err error)) error {
	deadline := time.Now().Add(timeout)
	interval := firstInterval
	for {
		done, err := cond()
		switch {
		case err != nil:
			return err
		case done:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("after %s: %w", timeout, ErrTimeout)
		}
		time.Sleep(interval)
		interval = min(2*interval, maxInterval)
	}
}
