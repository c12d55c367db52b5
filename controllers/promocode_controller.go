package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

// PromoCodeReconciler writes a PromoCode's state, offerID and its Accepted
// and Ready conditions, and requeues itself when its dates turn it over.
type PromoCodeReconciler struct {
	client.Client
	Recorder                events.EventRecorder
	MaxConcurrentReconciles int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=promocodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=promocodes/status,verbs=get;update;patch

// Reconcile decides one PromoCode and writes its status.
func (r *PromoCodeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pc trackingv1alpha1.PromoCode
	if err := r.Get(ctx, req.NamespacedName, &pc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Every claim on the code, PromoCodes and PromoCodeSet entries; this
	// PromoCode's own from the object just read (the cache may lag).
	claim := kube.Claim(&pc)
	verdict, err := resolveClaim(ctx, r.Client, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	offer, err := r.offerState(ctx, &pc)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	st := routing.StatusOf(claim, verdict, offer, now)

	orig := pc.DeepCopy()
	before := &orig.Status
	state := kube.State(st.State)
	pc.Status.State, pc.Status.OfferID, pc.Status.ObservedGeneration = state, st.OfferID, pc.Generation
	for _, c := range []metav1.Condition{kube.Condition(st.Accepted), kube.Condition(st.Ready)} {
		c.ObservedGeneration = pc.Generation
		meta.SetStatusCondition(&pc.Status.Conditions, c)
	}
	setStalled(&pc.Status.Conditions, pc.Generation, st.Accepted.Status == routing.ConditionFalse, st.Accepted.Reason, st.Accepted.Message)
	result := ctrl.Result{}
	if !st.NextTransition.IsZero() {
		// A little past the instant, so the clock has surely turned.
		result.RequeueAfter = st.NextTransition.Sub(now) + 50*time.Millisecond
	}
	if equality.Semantic.DeepEqual(before, &pc.Status) {
		return result, nil
	}
	// A patch, not an update: no conflict on a resourceVersion a stale cache held.
	if err := r.Status().Patch(ctx, &pc, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating PromoCode %s status: %w", req.NamespacedName, err)
	}
	if before.State != state {
		kind, reason, note := corev1.EventTypeNormal, "StateChanged", fmt.Sprintf("%s -> %s", orNone(before.State), state)
		if state == trackingv1alpha1.StateRejected {
			kind, reason, note = corev1.EventTypeWarning, verdict.Reason, verdict.Message
		}
		r.Recorder.Eventf(&pc, nil, kind, reason, "Reconcile", note)
	}
	logf.FromContext(ctx).V(1).Info("Updated PromoCode status", "state", st.State)
	return result, nil
}

// setStalled adds Stalled=True while the object cannot become Ready without
// a change (kstatus: Failed), and removes it otherwise: Ready=False alone
// readyEvent records a Ready decision on obj: Normal when ready, Warning
// when not, with the decision's reason and message.
func readyEvent(rec events.EventRecorder, obj runtime.Object, ready bool, reason, message string) {
	kind := corev1.EventTypeNormal
	if !ready {
		kind = corev1.EventTypeWarning
	}
	rec.Eventf(obj, nil, kind, reason, "Reconcile", message)
}

// reads as InProgress, Ready=True as Current.
func setStalled(conds *[]metav1.Condition, generation int64, stalled bool, reason, message string) {
	if !stalled {
		meta.RemoveStatusCondition(conds, trackingv1alpha1.ConditionStalled)
		return
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: trackingv1alpha1.ConditionStalled, Status: metav1.ConditionTrue,
		Reason: reason, Message: message, ObservedGeneration: generation})
}

func orNone(s trackingv1alpha1.PromoCodeState) string {
	if s == "" {
		return "None"
	}
	return string(s)
}

func (r *PromoCodeReconciler) offerState(ctx context.Context, pc *trackingv1alpha1.PromoCode) (routing.OfferState, error) {
	var offer trackingv1alpha1.Offer
	if err := r.Get(ctx, kube.OfferKeyOf(pc), &offer); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return routing.OfferState{}, nil
		}
		return routing.OfferState{}, fmt.Errorf("reading Offer %s: %w", kube.OfferKeyOf(pc), err)
	}
	v, _, err := kube.Resolver{Reader: r.Client}.OfferVerdict(ctx, &offer)
	if err != nil {
		return routing.OfferState{}, err
	}
	return routing.NewOfferState(kube.Offer(&offer), v), nil
}

// SetupWithManager watches PromoCodes, the PromoCodes sharing their folded
// code (creation, deletion and spec changes re-resolve the whole group), the
// PromoCodeSets with entries on it (the codes a set's event touched), and
// Offers (their codes follow them).
func (r *PromoCodeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&trackingv1alpha1.PromoCode{}).
		Watches(&trackingv1alpha1.PromoCode{}, handler.EnqueueRequestsFromMapFunc(r.codesSharingCode),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trackingv1alpha1.Offer{}, handler.EnqueueRequestsFromMapFunc(r.codesOfOffer),
			builder.WithPredicates(offerDecisionChanged)).
		Watches(&trackingv1alpha1.PromoCodeSet{}, setCodesHandler(func(ctx context.Context, codes []string, _ client.Object) []reconcile.Request {
			return promoCodesSharing(ctx, r.Client, codes)
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("promocode").
		Complete(r)
}

func (r *PromoCodeReconciler) codesSharingCode(ctx context.Context, obj client.Object) []reconcile.Request {
	group, err := kube.Resolver{Reader: r.Client}.CodeGroup(ctx, routing.Fold(obj.(*trackingv1alpha1.PromoCode).Spec.Code))
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list PromoCodes sharing a code")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(group))
	for _, pc := range group {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pc)})
	}
	return reqs
}

func (r *PromoCodeReconciler) codesOfOffer(ctx context.Context, obj client.Object) []reconcile.Request {
	var list trackingv1alpha1.PromoCodeList
	if err := r.List(ctx, &list, client.MatchingFields{kube.IndexOfferRef: obj.GetNamespace() + "/" + obj.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list PromoCodes of an Offer")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
