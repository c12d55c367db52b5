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
)

// StorefrontReconciler writes a Storefront's Ready condition (SPEC §8): it
// owns its shop (oldest wins), its signing Secret key holds a value, its
// Offers exist and are Ready. It reads the Secret from the cache, which holds
// hashes only: the value never reaches this controller, its status or its
// events.
type StorefrontReconciler struct {
	client.Client
	Recorder                events.EventRecorder
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=storefronts,verbs=get;list;watch
// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=storefronts/status,verbs=get;update;patch

// Reconcile decides one Storefront and writes its status.
func (r *StorefrontReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sf trackingv1alpha1.Storefront
	if err := r.Get(ctx, req.NamespacedName, &sf); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	v, err := kube.Resolver{Reader: r.Client}.StorefrontVerdict(ctx, &sf)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("deciding Storefront %s: %w", req.NamespacedName, err)
	}
	orig := sf.DeepCopy()
	before := &orig.Status
	wasReady := meta.IsStatusConditionTrue(before.Conditions, trackingv1alpha1.ConditionReady)
	status := metav1.ConditionFalse
	if v.Ready {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&sf.Status.Conditions, metav1.Condition{
		Type: trackingv1alpha1.ConditionReady, Status: status, Reason: v.Reason, Message: v.Message,
		ObservedGeneration: sf.Generation,
	})
	// Only a shop an older Storefront owns needs a change; a missing Secret
	// or Offer may simply not have been applied yet.
	setStalled(&sf.Status.Conditions, sf.Generation, v.Stalled, v.Reason, v.Message)
	sf.Status.ObservedGeneration = sf.Generation
	if equality.Semantic.DeepEqual(before, &sf.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, &sf, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating Storefront %s status: %w", req.NamespacedName, err)
	}
	old := meta.FindStatusCondition(before.Conditions, trackingv1alpha1.ConditionReady)
	if old == nil || wasReady != v.Ready || old.Reason != v.Reason {
		readyEvent(r.Recorder, &sf, v.Ready, v.Reason, v.Message)
	}
	logf.FromContext(ctx).V(1).Info("Updated Storefront status", "ready", v.Ready, "reason", v.Reason)
	return ctrl.Result{}, nil
}

// SetupWithManager watches Storefronts, the Storefronts of the same shop
// (a creation, deletion or shop change re-decides who owns it), signing
// Secrets (data changes only) and Offers (spec or readiness changes), each
// through a field index.
func (r *StorefrontReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&trackingv1alpha1.Storefront{}).
		Watches(&trackingv1alpha1.Storefront{}, handler.EnqueueRequestsFromMapFunc(r.sameShop),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.usingSecret),
			builder.WithPredicates(kube.SecretDataChanged)).
		Watches(&trackingv1alpha1.Offer{}, handler.EnqueueRequestsFromMapFunc(r.ofOffer),
			builder.WithPredicates(offerDecisionChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("storefront").
		Complete(r)
}

func storefrontRequests(ctx context.Context, list []*trackingv1alpha1.Storefront, err error, what string) []reconcile.Request {
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list Storefronts "+what)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list))
	for _, sf := range list {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sf)})
	}
	return reqs
}

func (r *StorefrontReconciler) sameShop(ctx context.Context, obj client.Object) []reconcile.Request {
	sf := obj.(*trackingv1alpha1.Storefront)
	list, err := kube.Resolver{Reader: r.Client}.StorefrontsWithShop(ctx, string(sf.Spec.Platform), sf.Spec.Shop)
	return storefrontRequests(ctx, list, err, "sharing a shop")
}

func (r *StorefrontReconciler) usingSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	list, err := kube.Resolver{Reader: r.Client}.StorefrontsUsingSecret(ctx, obj.GetNamespace(), obj.GetName())
	return storefrontRequests(ctx, list, err, "using a Secret")
}

func (r *StorefrontReconciler) ofOffer(ctx context.Context, obj client.Object) []reconcile.Request {
	list, err := kube.Resolver{Reader: r.Client}.StorefrontsOfOffer(ctx, obj.GetNamespace(), obj.GetName())
	return storefrontRequests(ctx, list, err, "of an Offer")
}
