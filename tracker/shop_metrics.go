package tracker

import "github.com/prometheus/client_golang/prometheus"

// ShopMetrics count the shops' webhook deliveries (SPEC §8).
type ShopMetrics struct {
	// Deliveries by platform, topic (a handled topic, "other", or "none"
	// before the signature was verified) and outcome (the reply's status).
	Deliveries *prometheus.CounterVec
	// Latency of a delivery, from request to reply, by platform.
	Latency *prometheus.HistogramVec
	// Conversions touched by deliveries, by platform and result: recorded,
	// duplicate, changed, invalid_transition, ignored (a code or order that
	// is not ours).
	Conversions *prometheus.CounterVec
}

func newShopMetrics(reg prometheus.Registerer) ShopMetrics {
	m := ShopMetrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promo_tracker_shop_deliveries_total", Help: "Shop webhook deliveries by platform, topic and outcome (reply status).",
		}, []string{"platform", "topic", "outcome"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "promo_tracker_shop_delivery_duration_seconds", Help: "Time from a shop webhook delivery to its reply, commits included.",
			Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"platform"}),
		Conversions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promo_tracker_shop_conversions_total", Help: "Conversions and codes of shop deliveries by platform and result.",
		}, []string{"platform", "result"}),
	}
	reg.MustRegister(m.Deliveries, m.Latency, m.Conversions)
	return m
}
