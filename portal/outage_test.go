package portal

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOutageLogsOneErrorNotOnePerRequest: 100 failed reads within a minute
// are one Error line, the next minute one more with the count, and the
// first success one Info line.
func TestOutageLogsOneErrorNotOnePerRequest(t *testing.T) {
	var b bytes.Buffer
	o := newOutageLog(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo})))
	now := time.Unix(1_800_000_000, 0)
	o.now = func() time.Time { return now }
	down := errors.New("connection refused")
	o.ok()
	for range 100 {
		o.failed("Reading transactions failed", down)
		now = now.Add(100 * time.Millisecond) // 10 s in all
	}
	if n := strings.Count(b.String(), "level=ERROR"); n != 1 {
		t.Fatalf("100 failures in 10 s logged %d Error lines, want 1:\n%s", n, b.String())
	}
	now = now.Add(time.Minute)
	o.failed("Reading transactions failed", down)
	if n := strings.Count(b.String(), "level=ERROR"); n != 2 || !strings.Contains(b.String(), "failuresSinceLastLogged=99") {
		t.Fatalf("a minute later: %d Error lines, want 2 with failuresSinceLastLogged=99:\n%s", n, b.String())
	}
	o.ok()
	o.ok()
	if n := strings.Count(b.String(), "level=INFO"); n != 1 {
		t.Fatalf("recovery logged %d Info lines, want 1:\n%s", n, b.String())
	}
	o.failed("Reading transactions failed", down)
	if n := strings.Count(b.String(), "level=ERROR"); n != 3 {
		t.Fatalf("a new outage after recovery: %d Error lines, want 3", n)
	}
}
