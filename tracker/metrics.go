package tracker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the tracker's Prometheus metrics.
type Metrics struct {
	Requests      *prometheus.CounterVec
	Latency       *prometheus.HistogramVec
	BatchSize     prometheus.Histogram
	CommitSeconds prometheus.Histogram
	QueueDepth    prometheus.Gauge
	TableCodes    prometheus.Gauge
	TableOffers   prometheus.Gauge
	TableVersion  *prometheus.GaugeVec
	SpoolRows     prometheus.Gauge
	Replayed      prometheus.Counter
	RedoneBatches prometheus.Counter
	// StatusChanges counts ChangeStatus outcomes per conversion (applied,
	// same, invalid) by source; StatusChangeSeconds times its transactions.
	StatusChanges       *prometheus.CounterVec
	StatusChangeSeconds prometheus.Histogram
	// SpooledChanges counts status changes found at replay (spooled rows
	// whose order was already recorded), by outcome.
	SpooledChanges *prometheus.CounterVec
	Shop           ShopMetrics
}

// NewMetrics registers the tracker's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promo_tracker_requests_total", Help: "Tracking requests by outcome (reply status or reason) and source.",
		}, []string{"outcome", "source"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "promo_tracker_request_duration_seconds", Help: "Time from request to reply, commit included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"source"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "promo_tracker_batch_rows", Help: "Rows per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "promo_tracker_commit_duration_seconds", Help: "Time of one group commit.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		QueueDepth:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_tracker_queue_depth", Help: "Rows waiting for a commit."}),
		TableCodes:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_tracker_table_codes", Help: "Distinct codes in the routing table."}),
		TableOffers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_tracker_table_offers", Help: "Offers in the routing table."}),
		TableVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promo_tracker_table_info", Help: "The routing table version being served (value 1).",
		}, []string{"version"}),
	}
	m.SpoolRows = prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_tracker_spool_rows", Help: "Conversions in the local spool waiting for PostgreSQL."})
	m.Replayed = prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_tracker_spool_replayed_total", Help: "Spooled conversions replayed into PostgreSQL."})
	m.RedoneBatches = prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_tracker_redone_batches_total",
		Help: "Group commits whose COPY met a taken order key (a repeated adv_order_id) and were redone with INSERT … ON CONFLICT."})
	m.StatusChanges = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promo_tracker_status_changes_total",
		Help: "Conversions a status change was asked for, by outcome (applied, same, invalid) and source."}, []string{"outcome", "source"})
	m.StatusChangeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "promo_tracker_status_change_duration_seconds", Help: "Time of one status change transaction.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.SpooledChanges = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promo_tracker_spool_status_changes_total",
		Help: "Spooled postbacks with conv_status whose order was already recorded, applied at replay as status changes, by outcome (applied, same, invalid)."}, []string{"outcome"})
	reg.MustRegister(m.SpoolRows, m.Replayed, m.RedoneBatches, m.StatusChanges, m.StatusChangeSeconds, m.SpooledChanges)
	m.Shop = newShopMetrics(reg)
	reg.MustRegister(m.Requests, m.Latency, m.BatchSize, m.CommitSeconds, m.QueueDepth, m.TableCodes, m.TableOffers, m.TableVersion)
	return m
}
