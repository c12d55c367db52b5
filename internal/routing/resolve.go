package routing

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Ref names an object: namespace/name.
type Ref struct {
	Namespace string
	Name      string
}

// String returns "namespace/name".
func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Rank orders claims and offers: creation time, then namespace/name, then the
// position of an entry inside its object (0 for kinds that hold one code). It
// is the deterministic order of SPEC §2 rule 4 and of Offer id conflicts.
type Rank struct {
	Created  time.Time
	Ref      Ref
	Position int
}

// Compare orders a before b when a is older.
func (a Rank) Compare(b Rank) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Ref.Namespace, b.Ref.Namespace), cmp.Compare(a.Ref.Name, b.Ref.Name),
		cmp.Compare(a.Position, b.Position))
}

// Claim is one object's claim on a promo code, whatever kind declares it (a
// PromoCode, an entry of a PromoCodeSet). Adapters build claims. Several
// claims may share a Ref (the entries of one set); they differ by
// Rank.Position.
type Claim struct {
	Folded string // Fold(Code)
	Code   string // as written
	Ref    Ref    // the claiming object
	// Kind names the claiming object's kind in messages ("PromoCode" when
	// empty) and breaks a tie between objects of different kinds with the
	// same creation instant and namespace/name.
	Kind string
	// Route is the ref the table's entry carries to trackers, the
	// conversions' promo_code_ref; empty means Ref.String().
	Route       string
	OfferRef    Ref
	AffiliateID int64
	Rank        Rank
	Start, End  time.Time // zero: unbounded
	Description string
}

// KindPromoCode is the kind of a claim that names none.
const KindPromoCode = "PromoCode"

// KindOf returns the claim's kind, KindPromoCode when it names none.
func (c *Claim) KindOf() string {
	if c.Kind == "" {
		return KindPromoCode
	}
	return c.Kind
}

// RouteRef returns the ref conversions record for the claim (Route, else
// namespace/name).
func (c *Claim) RouteRef() string {
	if c.Route == "" {
		return c.Ref.String()
	}
	return c.Route
}

// name is how messages name the claiming object: "PromoCode shop/x".
func (c *Claim) name() string { return c.KindOf() + " " + c.Ref.String() }

// sameObject reports whether two claims come from one object.
func (c *Claim) sameObject(o *Claim) bool { return c.Ref == o.Ref && c.KindOf() == o.KindOf() }

// Money is an amount as declared: exactly one of Fixed or Percent.
type Money struct {
	Fixed, Percent *string
}

// GoalSpec is a goal as declared.
type GoalSpec struct {
	ID              int64
	Alias           string
	Status          string // empty: approved
	Default         bool
	Payout, Revenue Money
}

// TokenRef names the Secret key holding an offer's postback token.
type TokenRef struct {
	Name, Key string
}

// OfferSpec is an offer as declared, whatever kind declares it.
type OfferSpec struct {
	Ref               Ref
	Rank              Rank
	ID                int64
	Title             string
	Currency          string
	PromoCodesEnabled bool
	Token             *TokenRef // nil: no token required
	Goals             []GoalSpec
}

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

// Condition types and states of a claim (the API's values).
const (
	ConditionReady    = "Ready"
	ConditionAccepted = "Accepted"

	ConditionTrue  = "True"
	ConditionFalse = "False"
)

// State is a claim's lifecycle state.
type State string

const (
	StateActive    State = "Active"
	StateScheduled State = "Scheduled"
	StateExpired   State = "Expired"
	StateRejected  State = "Rejected"
	StateInactive  State = "Inactive"
)

// Condition is a status condition, neutral of any API machinery.
type Condition struct {
	Type    string
	Status  string // ConditionTrue or ConditionFalse
	Reason  string
	Message string
}

// OfferVerdict is the decision about one Offer.
type OfferVerdict struct {
	Ready   bool
	Reason  string
	Message string
}

// CodeVerdict is the decision about one claim on its code (the Accepted
// condition). Holder names the object that beat it, if any.
type CodeVerdict struct {
	Accepted bool
	Reason   string
	Message  string
	Holder   Ref
}

// SortClaims sorts claims oldest first, the order of SPEC §2 rule 4 (Rank;
// objects of different kinds with equal ranks by kind name, so a PromoCode
// before a PromoCodeSet of the same namespace/name created in the same second).
func SortClaims(claims []*Claim) {
	slices.SortStableFunc(claims, compareClaims)
}

func compareClaims(a, b *Claim) int {
	return cmp.Or(a.Rank.Compare(b.Rank), cmp.Compare(a.KindOf(), b.KindOf()))
}

// resolved is an Offer that went through id resolution: its verdict and, when
// it owns its id and is valid, its compiled goals.
type resolved struct {
	spec    *OfferSpec
	verdict OfferVerdict
	goals   []Goal
}

// resolveOffers is the first half of the offer chain: id resolution (oldest
// first), then goal compilation of the owners; a compile error is the
// InvalidSpec verdict, never dropped.
func resolveOffers(offers []*OfferSpec) []resolved {
	sorted := slices.Clone(offers)
	slices.SortFunc(sorted, func(a, b *OfferSpec) int { return a.Rank.Compare(b.Rank) })
	owner := make(map[int64]*OfferSpec, len(sorted))
	out := make([]resolved, 0, len(sorted))
	for _, o := range sorted {
		if w, taken := owner[o.ID]; taken {
			out = append(out, resolved{spec: o, verdict: OfferVerdict{Reason: ReasonDuplicateOfferID, Message: fmt.Sprintf(
				"offer id %d is already used by Offer %s; choose another spec.id", o.ID, w.Ref)}})
			continue
		}
		owner[o.ID] = o
		goals, err := compileGoals(o)
		if err != nil {
			out = append(out, resolved{spec: o, verdict: OfferVerdict{Reason: ReasonInvalidSpec, Message: err.Error()}})
			continue
		}
		out = append(out, resolved{spec: o, goals: goals,
			verdict: OfferVerdict{Ready: true, Reason: ReasonValid, Message: "Offer is valid and routed"}})
	}
	return out
}

// ResolveOfferIDs decides which Offers own their spec.id. Offers sharing an id
// are ordered oldest first; the first wins, the others are DuplicateOfferID.
// Pass every Offer that shares an id with the ones you care about.
func ResolveOfferIDs(offers []*OfferSpec) map[Ref]OfferVerdict {
	out := make(map[Ref]OfferVerdict, len(offers))
	for _, r := range resolveOffers(offers) {
		out[r.spec.Ref] = r.verdict
	}
	return out
}

// WithToken refines an id verdict with the state of the offer's token secret:
// an Offer whose tokenSecretRef cannot be read is not Ready.
func WithToken(v OfferVerdict, o *OfferSpec, tokenFound bool) OfferVerdict {
	ref := o.Token
	if !v.Ready || ref == nil || tokenFound {
		return v
	}
	return OfferVerdict{Reason: ReasonTokenSecretMissing, Message: fmt.Sprintf(
		"Secret %s/%s has no key %q; create it or fix spec.tracking.tokenSecretRef", o.Ref.Namespace, ref.Name, ref.Key)}
}

// ResolveCodes applies SPEC §2 rule 4 to claims that share one folded code
// (pass all of them), keyed by Ref: for claims of one object each (PromoCodes
// of one kind). Claims that share a Ref (a set's entries) or objects of two
// kinds with one namespace/name need ResolveGroup.
func ResolveCodes(claims []*Claim) map[Ref]CodeVerdict {
	vs := ResolveGroup(claims)
	out := make(map[Ref]CodeVerdict, len(claims))
	for i, c := range claims {
		out[c.Ref] = vs[i]
	}
	return out
}

// ResolveGroup applies SPEC §2 rule 4 to claims that share one folded code
// (pass all of them) and returns the verdict of each, in the order given.
// Oldest first: the first fixes the owning affiliate; a later one of another
// affiliate is CodeOwnedByAnotherAffiliate; a later one on an Offer already
// holding the code is DuplicateCode. Messages name the holder (kind,
// namespace/name, affiliate).
func ResolveGroup(claims []*Claim) []CodeVerdict {
	order := make([]int, len(claims))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return compareClaims(claims[a], claims[b]) })
	out := make([]CodeVerdict, len(claims))
	var owner *Claim
	holders := make(map[Ref]*Claim, len(claims))
	for _, i := range order {
		c := claims[i]
		switch h, onOffer := holders[c.OfferRef]; {
		case owner != nil && c.AffiliateID != owner.AffiliateID:
			out[i] = CodeVerdict{Reason: ReasonCodeOwnedByAnotherAffiliate, Holder: owner.Ref, Message: fmt.Sprintf(
				"code %q belongs to affiliate %d (%s); choose another code",
				c.Code, owner.AffiliateID, owner.name())}
		case onOffer:
			out[i] = CodeVerdict{Reason: ReasonDuplicateCode, Holder: h.Ref, Message: fmt.Sprintf(
				"code %q is already on Offer %s (%s, affiliate %d); a code can be used once per offer",
				c.Code, c.OfferRef.Name, h.name(), h.AffiliateID)}
		default:
			if owner == nil {
				owner = c
			}
			holders[c.OfferRef] = c
			out[i] = CodeVerdict{Accepted: true, Reason: ReasonCodeAccepted, Message: fmt.Sprintf(
				"code %q is held by affiliate %d on Offer %s", c.Code, c.AffiliateID, c.OfferRef.Name)}
		}
	}
	return out
}

// WouldReject asks whether candidate, added to the claims that already share
// its folded code, would lose the resolution — the admission webhook's
// question. A candidate without a creation time is taken as created now.
// Claims of the candidate's own object (same kind and Ref) are left out:
// they are the object's previous version.
func WouldReject(existing []*Claim, candidate *Claim, now time.Time) (CodeVerdict, bool) {
	c := *candidate
	if c.Rank.Created.IsZero() {
		c.Rank.Created = now
	}
	group := make([]*Claim, 0, len(existing)+1)
	for _, e := range existing {
		if !e.sameObject(&c) {
			group = append(group, e)
		}
	}
	group = append(group, &c)
	v := ResolveGroup(group)[len(group)-1]
	return v, !v.Accepted
}

// OfferState is what a claim's status needs to know about its Offer.
type OfferState struct {
	Exists  bool
	ID      int64
	Ready   bool
	Enabled bool // spec.tracking.promoCodes.enabled
}

// NewOfferState summarizes an Offer (nil when missing) and its verdict.
func NewOfferState(o *OfferSpec, v OfferVerdict) OfferState {
	if o == nil {
		return OfferState{}
	}
	return OfferState{Exists: true, ID: o.ID, Ready: v.Ready, Enabled: o.PromoCodesEnabled}
}

// CodeStatus is the status the controller of a claim writes.
type CodeStatus struct {
	State    State
	OfferID  int64
	Accepted Condition
	Ready    Condition
	// NextTransition is when State changes by the clock alone (startDate or
	// endDate ahead); zero when it never does.
	NextTransition time.Time
}

// StatusOf computes a claim's state and conditions at instant now.
func StatusOf(c *Claim, v CodeVerdict, offer OfferState, now time.Time) CodeStatus {
	s := CodeStatus{OfferID: offer.ID}
	s.Accepted = condition(ConditionAccepted, v.Accepted, v.Reason, v.Message)
	switch {
	case !v.Accepted:
		s.State = StateRejected
		s.Ready = condition(ConditionReady, false, ReasonNotAccepted, "the code is not accepted: "+v.Message)
		return s
	case !offer.Exists:
		s.State = StateInactive
		s.Ready = condition(ConditionReady, false, ReasonOfferNotFound, fmt.Sprintf("Offer %s not found", c.OfferRef))
		return s
	case !offer.Ready:
		s.State = StateInactive
		s.Ready = condition(ConditionReady, false, ReasonOfferNotReady, fmt.Sprintf("Offer %s is not Ready", c.OfferRef))
		return s
	case !offer.Enabled:
		s.State = StateInactive
		s.Ready = condition(ConditionReady, false, ReasonPromoCodesDisabled,
			fmt.Sprintf("promo codes are disabled on Offer %s (spec.tracking.promoCodes.enabled)", c.OfferRef))
		return s
	}
	s.Ready = condition(ConditionReady, true, ReasonRouted, "the code is routed by trackers")
	switch {
	case !c.Start.IsZero() && now.Before(c.Start):
		s.State, s.NextTransition = StateScheduled, c.Start
	case !c.End.IsZero() && !now.Before(c.End):
		s.State = StateExpired
	default:
		s.State, s.NextTransition = StateActive, c.End
	}
	return s
}

func condition(typ string, ok bool, reason, msg string) Condition {
	st := ConditionFalse
	if ok {
		st = ConditionTrue
	}
	return Condition{Type: typ, Status: st, Reason: reason, Message: msg}
}
