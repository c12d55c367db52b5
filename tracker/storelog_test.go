package tracker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// An outage logs one Error, then at most one a minute with the count, and
// Info when storing works again — not an Error per failed request.
func TestStoreFailuresLoggedOncePerMinute(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var l storeFailureLog
	at := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	down := errors.New("connection refused")
	for i := range 1000 {
		l.failed(log, at.Add(time.Duration(i)*10*time.Millisecond), 7, "shop/p", down)
	}
	l.failed(log, at.Add(61*time.Second), 7, "shop/p", down)
	l.stored(log)
	l.stored(log)
	out := buf.String()
	if n := strings.Count(out, "level=ERROR"); n != 2 {
		t.Fatalf("%d Error lines, want 2 (first failure, then one after a minute):\n%s", n, out)
	}
	if !strings.Contains(out, "failuresSinceLastLogged=999") || !strings.Contains(out, "code_ref=shop/p") || strings.Count(out, "level=INFO") != 1 {
		t.Fatalf("want the 999 failures not logged, the code ref, and one Info on recovery:\n%s", out)
	}
}
