package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// Reasons of a PromoCodeSet's Ready and Stalled conditions beyond the
// PromoCode's (Routed, OfferNotFound, OfferNotReady, PromoCodesDisabled).
const (
	// ReasonCodesRejected: some entry lost its claim or is invalid.
	ReasonCodesRejected = "CodesRejected"
)

// PromoCodeSetReconciler decides every entry of a PromoCodeSet at once and
// writes the set's counts, rejectedCodes and conditions in one status write.
// It requeues itself at the next instant an entry's dates turn it over.
type PromoCodeSetReconciler struct {
	client.Client
	Recorder                events.EventRecorder
	MaxConcurrentReconciles int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=promocodesets,verbs=get;list;watch
// +kubebuilder:rbac:groups=tracking.promocodes.dev,resources=promocodesets/status,verbs=get;update;patch

// Reconcile decides one PromoCodeSet and writes its status.
func (r *PromoCodeSetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	began := time.Now()
	var set trackingv1alpha1.PromoCodeSet
	if err := r.Get(ctx, req.NamespacedName, &set); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	res := kube.Resolver{Reader: r.Client}
	claims, verdicts, err := res.ResolveSet(ctx, &set)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("resolving PromoCodeSet %s: %w", req.NamespacedName, err)
	}
	offer, err := offerStateOf(ctx, r.Client, kube.SetOfferKey(&set))
	if err != nil {
		return ctrl.Result{}, err
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	st, next := setStatus(&set, claims, verdicts, offer, now)

	before := set.Status.DeepCopy()
	if equality.Semantic.DeepEqual(before, &st) {
		return requeueAt(next, now), nil
	}
	decided := time.Since(began)
	patch, err := statusPatch(before, &st)
	if err != nil {
		return ctrl.Result{}, err
	}
	to := &trackingv1alpha1.PromoCodeSet{ObjectMeta: set.ObjectMeta}
	if err := r.Status().Patch(ctx, to, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating PromoCodeSet %s status: %w", req.NamespacedName, err)
	}
	r.events(&set, before, &st)
	logf.FromContext(ctx).V(1).Info("Updated PromoCodeSet status", "codes", st.Codes, "active", st.Active, "rejected", st.Rejected,
		"decided", decided, "took", time.Since(began))
	return requeueAt(next, now), nil
}

// statusPatch is a merge patch of the whole status alone: the spec (5,000
// entries) is neither marshalled nor sent, there is no conflict on a stale
// resourceVersion, the counts are always written (a diff would leave a zero
// out, and kubectl's columns blank), and fields that became empty are
// removed (null).
func statusPatch(before, after *trackingv1alpha1.PromoCodeSetStatus) (client.Patch, error) {
	fields := func(st *trackingv1alpha1.PromoCodeSetStatus) (map[string]any, error) {
		b, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		m := map[string]any{}
		return m, json.Unmarshal(b, &m)
	}
	cur, err := fields(after)
	if err != nil {
		return nil, err
	}
	old, err := fields(before)
	if err != nil {
		return nil, err
	}
	for k := range old {
		if _, ok := cur[k]; !ok {
			cur[k] = nil
		}
	}
	body, err := json.Marshal(map[string]any{"status": cur})
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.MergePatchType, body), nil
}

func requeueAt(next, now time.Time) ctrl.Result {
	if next.IsZero() {
		return ctrl.Result{}
	}
	// A little past the instant, so the clock has surely turned.
	return ctrl.Result{RequeueAfter: next.Sub(now) + 50*time.Millisecond}
}

// setStatus computes a set's status from its entries' verdicts: each entry's
// state exactly as a PromoCode's (routing.StatusOf), counted; the first 100
// rejected entries in spec order; Ready when every entry is Ready; Stalled
// while some entry is rejected. It returns the next instant a state turns
// over by the clock alone (zero: none).
func setStatus(set *trackingv1alpha1.PromoCodeSet, claims []*routing.Claim, verdicts []routing.CodeVerdict,
	offer routing.OfferState, now time.Time) (trackingv1alpha1.PromoCodeSetStatus, time.Time) {
	st := trackingv1alpha1.PromoCodeSetStatus{
		OfferID: offer.ID, Codes: int32(len(set.Spec.Codes)), ObservedGeneration: set.Generation, //nolint:gosec // at most 5,000
		Conditions: append([]metav1.Condition(nil), set.Status.Conditions...),
	}
	var next time.Time
	var notReady *routing.Condition // the first entry's reason, when not Ready for its offer
	var firstRejected string
	for i, c := range claims {
		if c == nil || !verdicts[i].Accepted {
			st.Rejected++
			if firstRejected == "" {
				firstRejected = fmt.Sprintf("%s: %s", set.Spec.Codes[i].Code, verdicts[i].Message)
			}
			if len(st.RejectedCodes) < trackingv1alpha1.MaxRejectedCodes {
				st.RejectedCodes = append(st.RejectedCodes, trackingv1alpha1.RejectedCode{
					Code: set.Spec.Codes[i].Code, Reason: verdicts[i].Reason, Message: verdicts[i].Message})
			}
			continue
		}
		cs := routing.StatusOf(c, verdicts[i], offer, now)
		if cs.State == routing.StateActive {
			st.Active++
		}
		if cs.Ready.Status != routing.ConditionTrue && notReady == nil {
			notReady = &cs.Ready
		}
		if !cs.NextTransition.IsZero() && (next.IsZero() || cs.NextTransition.Before(next)) {
			next = cs.NextTransition
		}
	}
	ready := metav1.Condition{Type: trackingv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: routing.ReasonRouted,
		Message: fmt.Sprintf("all %d codes are accepted and routed by trackers", st.Codes)}
	switch {
	case st.Rejected > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonCodesRejected
		ready.Message = fmt.Sprintf("%d of %d codes are rejected (status.rejectedCodes); the first: %s", st.Rejected, st.Codes, firstRejected)
	case notReady != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, notReady.Reason, notReady.Message
	}
	ready.ObservedGeneration = set.Generation
	meta.SetStatusCondition(&st.Conditions, ready)
	setStalled(&st.Conditions, set.Generation, st.Rejected > 0, ReasonCodesRejected, ready.Message)
	return st, next
}

// events records what a status write changed: a Warning when rejections
// appear or change, a Normal event when the counts move otherwise.
func (r *PromoCodeSetReconciler) events(set *trackingv1alpha1.PromoCodeSet, before, after *trackingv1alpha1.PromoCodeSetStatus) {
	counts := fmt.Sprintf("codes %d, active %d, rejected %d", after.Codes, after.Active, after.Rejected)
	switch {
	case after.Rejected > 0 && (after.Rejected != before.Rejected || !equality.Semantic.DeepEqual(after.RejectedCodes, before.RejectedCodes)):
		r.Recorder.Eventf(set, nil, corev1.EventTypeWarning, ReasonCodesRejected, "Reconcile", "%s; %s", counts,
			findCondition(after.Conditions, trackingv1alpha1.ConditionReady).Message)
	case after.Codes != before.Codes || after.Active != before.Active || after.Rejected != before.Rejected:
		r.Recorder.Eventf(set, nil, corev1.EventTypeNormal, "CodesChanged", "Reconcile", counts)
	}
}

func findCondition(conds []metav1.Condition, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// offerStateOf reads an Offer (by key) and its verdict for the status of
// the claims pointing at it; a missing Offer is OfferState{}.
func offerStateOf(ctx context.Context, c client.Client, key client.ObjectKey) (routing.OfferState, error) {
	var offer trackingv1alpha1.Offer
	if err := c.Get(ctx, key, &offer); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return routing.OfferState{}, nil
		}
		return routing.OfferState{}, fmt.Errorf("reading Offer %s: %w", key, err)
	}
	v, _, err := kube.Resolver{Reader: c}.OfferVerdict(ctx, &offer)
	if err != nil {
		return routing.OfferState{}, err
	}
	return routing.NewOfferState(kube.Offer(&offer), v), nil
}

// SetupWithManager watches PromoCodeSets (spec changes), the other sets and
// the PromoCodes sharing their folded codes (only the codes an edit touched),
// and Offers (their sets follow them).
func (r *PromoCodeSetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&trackingv1alpha1.PromoCodeSet{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trackingv1alpha1.PromoCodeSet{}, setCodesHandler(func(ctx context.Context, codes []string, self client.Object) []reconcile.Request {
			return setsSharing(ctx, r.Client, codes, self)
		})).
		Watches(&trackingv1alpha1.PromoCode{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return setsSharing(ctx, r.Client, []string{routing.Fold(o.(*trackingv1alpha1.PromoCode).Spec.Code)}, nil)
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&trackingv1alpha1.Offer{}, handler.EnqueueRequestsFromMapFunc(r.setsOfOffer),
			builder.WithPredicates(offerDecisionChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("promocodeset").
		Complete(r)
}

func (r *PromoCodeSetReconciler) setsOfOffer(ctx context.Context, obj client.Object) []reconcile.Request {
	var list trackingv1alpha1.PromoCodeSetList
	if err := r.List(ctx, &list, client.MatchingFields{kube.IndexOfferRef: obj.GetNamespace() + "/" + obj.GetName()},
		client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list PromoCodeSets of an Offer")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// setsSharing lists the PromoCodeSets, other than self, with an entry on
// any of the folded codes (one directory lookup).
func setsSharing(ctx context.Context, c client.Reader, codes []string, self client.Object) []reconcile.Request {
	sets, err := kube.Resolver{Reader: c}.SetsWithCodes(ctx, codes)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list PromoCodeSets sharing a code")
		return nil
	}
	var skip client.ObjectKey
	if self != nil {
		skip = client.ObjectKeyFromObject(self)
	}
	reqs := make([]reconcile.Request, 0, len(sets))
	for _, s := range sets {
		if k := client.ObjectKeyFromObject(s); k != skip {
			reqs = append(reqs, reconcile.Request{NamespacedName: k})
		}
	}
	return reqs
}

// promoCodesSharing lists the PromoCodes on any of the folded codes.
func promoCodesSharing(ctx context.Context, c client.Reader, codes []string) []reconcile.Request {
	var reqs []reconcile.Request
	for _, f := range codes {
		var list trackingv1alpha1.PromoCodeList
		if err := c.List(ctx, &list, client.MatchingFields{kube.IndexFoldedCode: f}, client.UnsafeDisableDeepCopy); err != nil {
			logf.FromContext(ctx).Error(err, "Failed to list PromoCodes sharing a code")
			return reqs
		}
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// setCodesHandler maps a PromoCodeSet event to the objects that claim the
// folded codes it touched: every code of a created or deleted set; on a spec
// update, only the codes whose entries changed (kube.ChangedCodes), so
// editing one entry of a 5,000-entry set wakes that code's other claimants,
// not everyone sharing any of its codes. Status writes (same generation)
// touch nothing.
func setCodesHandler(mapCodes func(ctx context.Context, codes []string, self client.Object) []reconcile.Request) handler.EventHandler {
	add := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], reqs []reconcile.Request) {
		for _, r := range reqs {
			q.Add(r)
		}
	}
	codesOf := func(o client.Object) []string {
		if s, ok := o.(*trackingv1alpha1.PromoCodeSet); ok {
			return kube.FoldedCodes(s)
		}
		return nil
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, mapCodes(ctx, codesOf(e.Object), e.Object))
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			o, ok1 := e.ObjectOld.(*trackingv1alpha1.PromoCodeSet)
			n, ok2 := e.ObjectNew.(*trackingv1alpha1.PromoCodeSet)
			if !ok1 || !ok2 || o.Generation == n.Generation {
				return
			}
			add(q, mapCodes(ctx, kube.ChangedCodes(kube.CodeSignatures(o), kube.CodeSignatures(n)), n))
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, mapCodes(ctx, codesOf(e.Object), e.Object))
		},
	}
}

// resolveClaim decides one claim against every other claim on its folded
// code, PromoCodes and set entries alike; the claim's own object's entries in
// the cache are replaced by the claim given.
func resolveClaim(ctx context.Context, c client.Reader, claim *routing.Claim) (routing.CodeVerdict, error) {
	group, err := kube.Resolver{Reader: c}.Claims(ctx, claim.Folded)
	if err != nil {
		return routing.CodeVerdict{}, err
	}
	others := make([]*routing.Claim, 0, len(group)+1)
	for _, g := range group {
		if g.Ref != claim.Ref || g.KindOf() != claim.KindOf() {
			others = append(others, g)
		}
	}
	others = append(others, claim)
	return routing.ResolveGroup(others)[len(others)-1], nil
}
