package poll

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestForReturnsOnceDone(t *testing.T) {
	calls := 0
	if err := For(time.Minute, func() (bool, error) { calls++; return calls == 3, nil }); err != nil || calls != 3 {
		t.Fatalf("For = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestForStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("exited")
	calls := 0
	if err := For(time.Minute, func() (bool, error) { calls++; return false, boom }); !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("For = %v after %d calls, want %v after 1", err, calls, boom)
	}
}

func TestForTimesOut(t *testing.T) {
	err := For(30*time.Millisecond, func() (bool, error) { return false, nil })
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("For = %v, want ErrTimeout", err)
	}
}

// recorder is a testing.TB that records Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
	if len(args) > 0 {
		r.failed = strings.TrimSpace(strings.ReplaceAll(format, "%s", "")) + " " + args[len(args)-1].(string)
	}
}

func TestUntilFailsWithTheLastReason(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	Until(r, 30*time.Millisecond, func() (bool, string) { n++; return false, "still " + string(rune('0'+n%10)) })
	if !strings.Contains(r.failed, "still") {
		t.Fatalf("Until did not fail with the condition's reason: %q", r.failed)
	}
	r = &recorder{TB: t}
	Until(r, time.Minute, func() (bool, string) { return true, "" })
	if r.failed != "" {
		t.Fatalf("Until failed a condition that held: %q", r.failed)
	}
}
