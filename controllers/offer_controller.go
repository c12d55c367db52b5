package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// OfferReconciler writes an Offer's Ready condition: it owns its spec.id
// (oldest wins), its goals compile, its token secret exists.
type OfferReconciler struct {
	client.Client
	Recorder                events.EventRecorder
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=offers,verbs=get;list;watch
// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=offers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile decides one Offer and writes its status.
func (r *OfferReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var offer trackingv1alpha1.Offer
	if err := r.Get(ctx, req.NamespacedName, &offer); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	v, _, err := kube.Resolver{Reader: r.Client}.OfferVerdict(ctx, &offer)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("deciding Offer %s: %w", req.NamespacedName, err)
	}
	orig := offer.DeepCopy()
	before := &orig.Status
	wasReady := meta.IsStatusConditionTrue(offer.Status.Conditions, trackingv1alpha1.ConditionReady)
	status := metav1.ConditionFalse
	if v.Ready {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&offer.Status.Conditions, metav1.Condition{
		Type: trackingv1alpha1.ConditionReady, Status: status, Reason: v.Reason, Message: v.Message,
		ObservedGeneration: offer.Generation,
	})
	// An older Offer owning the id, or a spec that does not compile, needs a
	// change; a missing token Secret may simply not have been applied yet.
	setStalled(&offer.Status.Conditions, offer.Generation, v.Reason == routing.ReasonDuplicateOfferID || v.Reason == routing.ReasonInvalidSpec,
		v.Reason, v.Message)
	offer.Status.ObservedGeneration = offer.Generation
	if equality.Semantic.DeepEqual(before, &offer.Status) {
		return ctrl.Result{}, nil
	}
	// A patch, not an update: a status decided from a cache a write behind
	// must not fail on the resourceVersion (the next event reconciles again).
	if err := r.Status().Patch(ctx, &offer, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating Offer %s status: %w", req.NamespacedName, err)
	}
	if wasReady != v.Ready || len(before.Conditions) == 0 {
		readyEvent(r.Recorder, &offer, v.Ready, v.Reason, v.Message)
	}
	logf.FromContext(ctx).V(1).Info("Updated Offer status", "ready", v.Ready, "reason", v.Reason)
	return ctrl.Result{}, nil
}

// SetupWithManager watches Offers, the Offers sharing their id, and token Secrets.
func (r *OfferReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&trackingv1alpha1.Offer{}).
		Watches(&trackingv1alpha1.Offer{}, handler.EnqueueRequestsFromMapFunc(r.offersSharingID),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.offersUsingSecret),
			builder.WithPredicates(kube.SecretDataChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("offer").
		Complete(r)
}

func (r *OfferReconciler) offersSharingID(ctx context.Context, obj client.Object) []reconcile.Request {
	offers, err := kube.Resolver{Reader: r.Client}.OffersWithID(ctx, obj.(*trackingv1alpha1.Offer).Spec.ID)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list Offers sharing an id")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(offers))
	for _, o := range offers {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
	}
	return reqs
}

func (r *OfferReconciler) offersUsingSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var list trackingv1alpha1.OfferList
	if err := r.List(ctx, &list, client.MatchingFields{kube.IndexTokenSecret: obj.GetNamespace() + "/" + obj.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list Offers using a Secret")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
