package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// offerDecisionChanged passes the updates of an Offer its PromoCodes can
// see: a spec change (generation) or a change of its Ready condition (the
// Offer controller's verdict moved, e.g. its token Secret appeared). Other
// status writes — observedGeneration, messages — wake no PromoCode.
var offerDecisionChanged = predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*trackingv1alpha1.Offer)
		n, ok2 := e.ObjectNew.(*trackingv1alpha1.Offer)
		if !ok1 || !ok2 {
			return true
		}
		a := meta.FindStatusCondition(o.Status.Conditions, trackingv1alpha1.ConditionReady)
		b := meta.FindStatusCondition(n.Status.Conditions, trackingv1alpha1.ConditionReady)
		return (a == nil) != (b == nil) || a != nil && (a.Status != b.Status || a.Reason != b.Reason)
	},
})
