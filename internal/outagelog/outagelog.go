// Package outagelog keeps an outage — PostgreSQL or the API server
// unreachable — from writing an Error line per failed request, for the
// tracker and the portal alike. The first failure is logged at Error; later
// ones at Debug, with at most one Error per interval saying how many were not
// logged (failuresSinceLastLogged); the first success after them at Info.
// Request metrics count every failure; the log says that and when.
package outagelog

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Log is one outage's throttle. The zero value logs at most one Error a minute.
type Log struct {
	// Every is the least time between two Error lines; zero means a minute.
	Every time.Duration

	failing    atomic.Bool // read without the lock on every success
	mu         sync.Mutex
	lastError  time.Time
	suppressed int
}

// Failed records a failure at now; attrs are logged with the Error lines.
func (l *Log) Failed(log *slog.Logger, now time.Time, msg string, err error, attrs ...any) {
	every := l.Every
	if every == 0 {
		every = time.Minute
	}
	l.mu.Lock()
	loud := !l.failing.Load() || now.Sub(l.lastError) >= every
	suppressed := l.suppressed
	if loud {
		l.failing.Store(true)
		l.lastError, l.suppressed = now, 0
	} else {
		l.suppressed++
	}
	l.mu.Unlock()
	if loud {
		log.Error(msg, append(attrs, "err", err, "failuresSinceLastLogged", suppressed)...)
		return
	}
	log.Debug(msg, append(attrs, "err", err)...)
}

// Recovered records a success; after failures it logs msg at Info once.
func (l *Log) Recovered(log *slog.Logger, msg string) {
	if !l.failing.Load() {
		return
	}
	l.mu.Lock()
	if !l.failing.Load() {
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.failing.Store(false)
	l.suppressed = 0
	l.mu.Unlock()
	log.Info(msg, "failuresSinceLastLogged", suppressed)
}
