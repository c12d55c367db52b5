// Package kube is the layer between the API types and the neutral routing
// core: adapters that turn each kind into claims and offer specs, the field
// indexes, the Secret-hash cache transform and the cached reads the
// controllers, the webhook, the route server and the portal share. A new kind
// (PromoCodeSet, Storefront) gets its adapter here; internal/routing never
// sees a CRD struct.
package kube

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// RefOf returns the namespace/name of an object.
func RefOf(o metav1.Object) routing.Ref {
	return routing.Ref{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Key returns the client key of a ref.
func Key(r routing.Ref) types.NamespacedName {
	return types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
}

// OfferKeyOf returns the key of the Offer a PromoCode points at.
func OfferKeyOf(pc *trackingv1alpha1.PromoCode) types.NamespacedName {
	return types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name}
}

func rankOf(o metav1.Object) routing.Rank {
	return routing.Rank{Created: o.GetCreationTimestamp().Time, Ref: RefOf(o)}
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// Claim turns a PromoCode into its claim on its code.
func Claim(pc *trackingv1alpha1.PromoCode) *routing.Claim {
	return &routing.Claim{
		Folded: routing.Fold(pc.Spec.Code), Code: pc.Spec.Code, Ref: RefOf(pc),
		OfferRef:    routing.Ref{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name},
		AffiliateID: pc.Spec.AffiliateID, Rank: rankOf(pc),
		Start: timeOf(pc.Spec.StartDate), End: timeOf(pc.Spec.EndDate),
		Description: pc.Spec.Description,
	}
}

// Claims turns PromoCodes into claims.
func Claims(pcs []*trackingv1alpha1.PromoCode) []*routing.Claim {
	out := make([]*routing.Claim, len(pcs))
	for i, pc := range pcs {
		out[i] = Claim(pc)
	}
	return out
}

// Offer turns an Offer into its spec for the core.
func Offer(o *trackingv1alpha1.Offer) *routing.OfferSpec {
	s := &routing.OfferSpec{
		Ref: RefOf(o), Rank: rankOf(o), ID: o.Spec.ID, Title: o.Spec.Title, Currency: o.Spec.Currency,
		PromoCodesEnabled: o.Spec.Tracking.PromoCodes.Enabled,
		Goals:             make([]routing.GoalSpec, len(o.Spec.Goals)),
	}
	if r := o.Spec.Tracking.TokenSecretRef; r != nil {
		s.Token = &routing.TokenRef{Name: r.Name, Key: r.Key}
	}
	for i, g := range o.Spec.Goals {
		s.Goals[i] = routing.GoalSpec{
			ID: g.ID, Alias: g.Alias, Status: string(g.Status), Default: g.Default,
			Payout:  routing.Money{Fixed: g.Payout.Fixed, Percent: g.Payout.Percent},
			Revenue: routing.Money{Fixed: g.Revenue.Fixed, Percent: g.Revenue.Percent},
		}
	}
	return s
}

// Offers turns Offers into specs.
func Offers(os []*trackingv1alpha1.Offer) []*routing.OfferSpec {
	out := make([]*routing.OfferSpec, len(os))
	for i, o := range os {
		out[i] = Offer(o)
	}
	return out
}

// Condition turns a core condition into the API's.
func Condition(c routing.Condition) metav1.Condition {
	return metav1.Condition{Type: c.Type, Status: metav1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message}
}

// State turns a core state into the PromoCode's.
func State(s routing.State) trackingv1alpha1.PromoCodeState {
	return trackingv1alpha1.PromoCodeState(s)
}
