package portal

import (
	"log/slog"
	"sync"
	"time"
)

// outageLog keeps an outage (PostgreSQL or the API server unreachable) from
// writing an Error line per failed request: the first failure is logged at
// Error, the next ones at Debug with at most one Error a minute saying how
// many there were, and the first success after them at Info.
// promo_portal_requests_total{code="503"} counts every one.
type outageLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	failing    bool
	lastError  time.Time
	suppressed int
}

func newOutageLog(log *slog.Logger) *outageLog {
	return &outageLog{log: log, every: time.Minute, now: time.Now}
}

// failed records a failed read.
func (o *outageLog) failed(msg string, err error) {
	o.mu.Lock()
	now := o.now()
	loud := !o.failing || now.Sub(o.lastError) >= o.every
	suppressed := o.suppressed
	if loud {
		o.failing, o.lastError, o.suppressed = true, now, 0
	} else {
		o.suppressed++
	}
	o.mu.Unlock()
	if loud {
		o.log.Error(msg, "err", err, "failuresSinceLastLogged", suppressed)
		return
	}
	o.log.Debug(msg, "err", err)
}

// ok records a successful read, ending an outage.
func (o *outageLog) ok() {
	o.mu.Lock()
	if !o.failing {
		o.mu.Unlock()
		return
	}
	suppressed := o.suppressed
	o.failing, o.suppressed = false, 0
	o.mu.Unlock()
	o.log.Info("Reads succeed again", "failuresSinceLastLogged", suppressed)
}
