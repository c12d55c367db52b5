package portal

import (
	"log/slog"
	"time"

	"promocodes.dev/promo-operator/internal/outagelog"
)

// outageLog keeps an outage (PostgreSQL or the API server unreachable) from
// writing an Error line per failed request: internal/outagelog's throttle,
// the same as the tracker's. promo_portal_requests_total{code="503"} counts
// every one.
type outageLog struct {
	log *slog.Logger
	now func() time.Time
	outagelog.Log
}

func newOutageLog(log *slog.Logger) *outageLog { return &outageLog{log: log, now: time.Now} }

// failed records a failed read.
func (o *outageLog) failed(msg string, err error) { o.Failed(o.log, o.now(), msg, err) }

// ok records a successful read, ending an outage.
func (o *outageLog) ok() { o.Recovered(o.log, "Reads succeed again") }
