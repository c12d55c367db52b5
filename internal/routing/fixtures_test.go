package routing

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func offer(ns, name string, id int64, enabled bool, created time.Duration) *trackingv1alpha1.Offer {
	return &trackingv1alpha1.Offer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec: trackingv1alpha1.OfferSpec{
			ID: id, Title: name, Currency: "USD",
			Tracking: trackingv1alpha1.Tracking{PromoCodes: trackingv1alpha1.PromoCodeTracking{Enabled: enabled}},
			Goals: []trackingv1alpha1.Goal{
				{ID: 1, Alias: "sale", Default: true, Status: "approved",
					Payout: trackingv1alpha1.Money{Percent: ptr.To("10")}, Revenue: trackingv1alpha1.Money{Fixed: ptr.To("8.00")}},
				{ID: 2, Alias: "lead", Status: "pending",
					Payout: trackingv1alpha1.Money{Fixed: ptr.To("1.50")}, Revenue: trackingv1alpha1.Money{Fixed: ptr.To("2.00")}},
			},
		},
	}
}

func code(ns, name, c, offerName string, affiliate int64, created time.Duration) *trackingv1alpha1.PromoCode {
	return &trackingv1alpha1.PromoCode{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec: trackingv1alpha1.PromoCodeSpec{
			Code: c, OfferRef: trackingv1alpha1.LocalOfferReference{Name: offerName}, AffiliateID: affiliate,
		},
	}
}

func dated(pc *trackingv1alpha1.PromoCode, start, end time.Time) *trackingv1alpha1.PromoCode {
	if !start.IsZero() {
		pc.Spec.StartDate = &metav1.Time{Time: start}
	}
	if !end.IsZero() {
		pc.Spec.EndDate = &metav1.Time{Time: end}
	}
	return pc
}
