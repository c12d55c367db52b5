package outagelog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// 100 failures within 10 s are one Error line; a minute later one more with
// the count of those not logged; the first success one Info line; a new
// outage after it an Error again.
func TestOneErrorPerIntervalNotOnePerRequest(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var l Log
	now := time.Unix(1_800_000_000, 0)
	down := errors.New("connection refused")
	l.Recovered(log, "ok again")
	for range 100 {
		l.Failed(log, now, "Reading failed", down, "offer", 7)
		now = now.Add(100 * time.Millisecond)
	}
	if n := strings.Count(b.String(), "level=ERROR"); n != 1 || !strings.Contains(b.String(), "offer=7") {
		t.Fatalf("100 failures in 10 s logged %d Error lines, want 1 with its attrs:\n%s", n, b.String())
	}
	now = now.Add(time.Minute)
	l.Failed(log, now, "Reading failed", down)
	if n := strings.Count(b.String(), "level=ERROR"); n != 2 || !strings.Contains(b.String(), "failuresSinceLastLogged=99") {
		t.Fatalf("a minute later: %d Error lines, want 2 with failuresSinceLastLogged=99:\n%s", n, b.String())
	}
	l.Recovered(log, "ok again")
	l.Recovered(log, "ok again")
	if n := strings.Count(b.String(), "level=INFO"); n != 1 {
		t.Fatalf("recovery logged %d Info lines, want 1:\n%s", n, b.String())
	}
	l.Failed(log, now, "Reading failed", down)
	if n := strings.Count(b.String(), "level=ERROR"); n != 3 {
		t.Fatalf("a new outage after recovery: %d Error lines, want 3", n)
	}
}

// Concurrent failures and successes from many requests keep the counts
// consistent (run with -race).
func TestConcurrentUse(t *testing.T) {
	var b syncBuffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	l := Log{Every: time.Hour}
	now := time.Unix(1_800_000_000, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.Failed(log, now, "Storing failed", errors.New("down"))
			}
		})
	}
	wg.Wait()
	l.Recovered(log, "Storing again")
	out := b.String()
	if strings.Count(out, "level=ERROR") != 1 || !strings.Contains(out, "failuresSinceLastLogged=799") {
		t.Fatalf("800 concurrent failures: want 1 Error and a recovery counting 799:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
