package routing

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// Ref names an object: namespace/name.
type Ref = types.NamespacedName

// Condition reasons written by the controllers.
const (
	ReasonValid                       = "Valid"
	ReasonDuplicateOfferID            = "DuplicateOfferID"
	ReasonTokenSecretMissing          = "TokenSecretMissing"
	ReasonInvalidSpec                 = "InvalidSpec"
	ReasonCodeAccepted                = "CodeAccepted"
	ReasonCodeOwnedByAnotherAffiliate = "CodeOwnedByAnotherAffiliate"
	ReasonDuplicateCode               = "DuplicateCode"
	ReasonRouted                      = "Routed"
	ReasonNotAccepted                 = "NotAccepted"
	ReasonOfferNotFound               = "OfferNotFound"
	ReasonOfferNotReady               = "OfferNotReady"
	ReasonPromoCodesDisabled          = "PromoCodesDisabled"
)

// OfferVerdict is the decision about one Offer.
type OfferVerdict struct {
	Ready   bool
	Reason  string
	Message string
}

// CodeVerdict is the decision about one PromoCode's claim on its code (the
// Accepted condition). Holder names the PromoCode that beat it, if any.
type CodeVerdict struct {
	Accepted bool
	Reason   string
	Message  string
	Holder   Ref
}

// RefOf returns the namespace/name of an object.
func RefOf(o metav1.Object) Ref {
	return Ref{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// OfferRefOf returns the namespace/name of the Offer a PromoCode points at.
func OfferRefOf(pc *trackingv1alpha1.PromoCode) Ref {
	return Ref{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name}
}

// olderFirst orders objects by (creationTimestamp, namespace, name): the
// deterministic order of SPEC §2 rule 4 and of Offer id conflicts.
func olderFirst(a, b metav1.Object) int {
	if c := a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
}

// SortPromoCodes sorts PromoCodes oldest first, the order of SPEC §2 rule 4.
func SortPromoCodes(codes []*trackingv1alpha1.PromoCode) {
	slices.SortFunc(codes, func(a, b *trackingv1alpha1.PromoCode) int { return olderFirst(a, b) })
}

// ResolveOfferIDs decides which Offers own their spec.id. Offers sharing an id
// are ordered oldest first; the first wins, the others are DuplicateOfferID.
// Pass every Offer that shares an id with the ones you care about.
func ResolveOfferIDs(offers []*trackingv1alpha1.Offer) map[Ref]OfferVerdict {
	sorted := slices.Clone(offers)
	slices.SortFunc(sorted, func(a, b *trackingv1alpha1.Offer) int { return olderFirst(a, b) })
	owner := make(map[int64]*trackingv1alpha1.Offer, len(sorted))
	out := make(map[Ref]OfferVerdict, len(sorted))
	for _, o := range sorted {
		if w, taken := owner[o.Spec.ID]; taken {
			out[RefOf(o)] = OfferVerdict{Reason: ReasonDuplicateOfferID, Message: fmt.Sprintf(
				"offer id %d is already used by Offer %s/%s; choose another spec.id", o.Spec.ID, w.Namespace, w.Name)}
			continue
		}
		owner[o.Spec.ID] = o
		if _, err := compileGoals(o); err != nil {
			out[RefOf(o)] = OfferVerdict{Reason: ReasonInvalidSpec, Message: err.Error()}
			continue
		}
		out[RefOf(o)] = OfferVerdict{Ready: true, Reason: ReasonValid, Message: "Offer is valid and routed"}
	}
	return out
}

// WithToken refines an id verdict with the state of the offer's token secret:
// an Offer whose tokenSecretRef cannot be read is not Ready.
func WithToken(v OfferVerdict, o *trackingv1alpha1.Offer, tokenFound bool) OfferVerdict {
	ref := o.Spec.Tracking.TokenSecretRef
	if !v.Ready || ref == nil || tokenFound {
		return v
	}
	return OfferVerdict{Reason: ReasonTokenSecretMissing, Message: fmt.Sprintf(
		"Secret %s/%s has no key %q; create it or fix spec.tracking.tokenSecretRef", o.Namespace, ref.Name, ref.Key)}
}

// ResolveCodes applies SPEC §2 rule 4 to PromoCodes that share one folded code
// (pass all of them). Oldest first: the first fixes the owning affiliate; a
// later one of another affiliate is CodeOwnedByAnotherAffiliate; a later one
// on an Offer already holding the code is DuplicateCode.
func ResolveCodes(codes []*trackingv1alpha1.PromoCode) map[Ref]CodeVerdict {
	sorted := slices.Clone(codes)
	SortPromoCodes(sorted)
	out := make(map[Ref]CodeVerdict, len(sorted))
	var owner *trackingv1alpha1.PromoCode
	holders := make(map[Ref]*trackingv1alpha1.PromoCode, len(sorted))
	for _, pc := range sorted {
		switch h, onOffer := holders[OfferRefOf(pc)]; {
		case owner != nil && pc.Spec.AffiliateID != owner.Spec.AffiliateID:
			out[RefOf(pc)] = CodeVerdict{Reason: ReasonCodeOwnedByAnotherAffiliate, Holder: RefOf(owner), Message: fmt.Sprintf(
				"code %q belongs to affiliate %d (PromoCode %s/%s); choose another code",
				pc.Spec.Code, owner.Spec.AffiliateID, owner.Namespace, owner.Name)}
		case onOffer:
			out[RefOf(pc)] = CodeVerdict{Reason: ReasonDuplicateCode, Holder: RefOf(h), Message: fmt.Sprintf(
				"code %q is already on Offer %s (PromoCode %s/%s, affiliate %d); a code can be used once per offer",
				pc.Spec.Code, pc.Spec.OfferRef.Name, h.Namespace, h.Name, h.Spec.AffiliateID)}
		default:
			if owner == nil {
				owner = pc
			}
			holders[OfferRefOf(pc)] = pc
			out[RefOf(pc)] = CodeVerdict{Accepted: true, Reason: ReasonCodeAccepted, Message: fmt.Sprintf(
				"code %q is held by affiliate %d on Offer %s", pc.Spec.Code, pc.Spec.AffiliateID, pc.Spec.OfferRef.Name)}
		}
	}
	return out
}

// WouldReject asks whether candidate, added to the PromoCodes that already
// share its folded code, would lose the resolution — the admission webhook's
// question. A candidate without a creationTimestamp is taken as created now.
func WouldReject(existing []*trackingv1alpha1.PromoCode, candidate *trackingv1alpha1.PromoCode, now time.Time) (CodeVerdict, bool) {
	c := candidate.DeepCopy()
	if c.CreationTimestamp.IsZero() {
		c.CreationTimestamp = metav1.NewTime(now)
	}
	group := make([]*trackingv1alpha1.PromoCode, 0, len(existing)+1)
	for _, pc := range existing {
		if RefOf(pc) != RefOf(c) {
			group = append(group, pc)
		}
	}
	v := ResolveCodes(append(group, c))[RefOf(c)]
	return v, !v.Accepted
}

// OfferState is what a PromoCode's status needs to know about its Offer.
type OfferState struct {
	Exists  bool
	ID      int64
	Ready   bool
	Enabled bool // spec.tracking.promoCodes.enabled
}

// NewOfferState summarizes an Offer (nil when missing) and its verdict.
func NewOfferState(o *trackingv1alpha1.Offer, v OfferVerdict) OfferState {
	if o == nil {
		return OfferState{}
	}
	return OfferState{Exists: true, ID: o.Spec.ID, Ready: v.Ready, Enabled: o.Spec.Tracking.PromoCodes.Enabled}
}

// CodeStatus is the status the PromoCode controller writes.
type CodeStatus struct {
	State    trackingv1alpha1.PromoCodeState
	OfferID  int64
	Accepted metav1.Condition
	Ready    metav1.Condition
	// NextTransition is when State changes by the clock alone (startDate or
	// endDate ahead); zero when it never does.
	NextTransition time.Time
}

// StatusOf computes a PromoCode's state and conditions at instant now.
func StatusOf(pc *trackingv1alpha1.PromoCode, v CodeVerdict, offer OfferState, now time.Time) CodeStatus {
	s := CodeStatus{OfferID: offer.ID}
	s.Accepted = condition(trackingv1alpha1.ConditionAccepted, v.Accepted, v.Reason, v.Message)
	switch {
	case !v.Accepted:
		s.State = trackingv1alpha1.StateRejected
		s.Ready = condition(trackingv1alpha1.ConditionReady, false, ReasonNotAccepted, "the code is not accepted: "+v.Message)
		return s
	case !offer.Exists:
		s.State = trackingv1alpha1.StateInactive
		s.Ready = condition(trackingv1alpha1.ConditionReady, false, ReasonOfferNotFound,
			fmt.Sprintf("Offer %s/%s not found", pc.Namespace, pc.Spec.OfferRef.Name))
		return s
	case !offer.Ready:
		s.State = trackingv1alpha1.StateInactive
		s.Ready = condition(trackingv1alpha1.ConditionReady, false, ReasonOfferNotReady,
			fmt.Sprintf("Offer %s/%s is not Ready", pc.Namespace, pc.Spec.OfferRef.Name))
		return s
	case !offer.Enabled:
		s.State = trackingv1alpha1.StateInactive
		s.Ready = condition(trackingv1alpha1.ConditionReady, false, ReasonPromoCodesDisabled,
			fmt.Sprintf("promo codes are disabled on Offer %s/%s (spec.tracking.promoCodes.enabled)", pc.Namespace, pc.Spec.OfferRef.Name))
		return s
	}
	s.Ready = condition(trackingv1alpha1.ConditionReady, true, ReasonRouted, "the code is routed by trackers")
	start, end := window(pc)
	switch {
	case !start.IsZero() && now.Before(start):
		s.State, s.NextTransition = trackingv1alpha1.StateScheduled, start
	case !end.IsZero() && !now.Before(end):
		s.State = trackingv1alpha1.StateExpired
	default:
		s.State, s.NextTransition = trackingv1alpha1.StateActive, end
	}
	return s
}

func window(pc *trackingv1alpha1.PromoCode) (start, end time.Time) {
	if pc.Spec.StartDate != nil {
		start = pc.Spec.StartDate.Time
	}
	if pc.Spec.EndDate != nil {
		end = pc.Spec.EndDate.Time
	}
	return start, end
}

func condition(typ string, ok bool, reason, msg string) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg}
}
