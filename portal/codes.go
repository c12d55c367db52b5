package portal

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// indexAffiliate is the cache field index of PromoCodes by spec.affiliateID
// and of PromoCodeSets by their entries' affiliateIDs (each once).
const indexAffiliate = "spec.affiliateID"

// IndexCodes registers the field indexes Codes.List needs on the cache that
// backs reader: by affiliate, and internal/kube's (folded codes across
// PromoCodes and PromoCodeSets), so set entries resolve as the manager
// resolves them.
func IndexCodes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &trackingv1alpha1.PromoCode{}, indexAffiliate, func(o client.Object) []string {
		return []string{strconv.FormatInt(o.(*trackingv1alpha1.PromoCode).Spec.AffiliateID, 10)}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &trackingv1alpha1.PromoCodeSet{}, indexAffiliate, setAffiliates); err != nil {
		return err
	}
	return kube.SetupIndexes(ctx, indexer)
}

// Code is a PromoCode as the portal shows it: what an affiliate's widget
// lists, and a row of the Promo Codes report.
type Code struct {
	Code        string     `json:"code"`
	OfferID     int64      `json:"offer_id"`
	OfferTitle  string     `json:"offer_title"`
	Description string     `json:"description,omitempty"`
	StartDate   *time.Time `json:"startDate,omitempty"`
	EndDate     *time.Time `json:"endDate,omitempty"`
	State       string     `json:"state"`
	// Back-office fields, not part of the affiliate API.
	AffiliateID int64  `json:"-"`
	Ref         string `json:"-"`
	Offer       string `json:"-"`
}

// CodeFilter selects codes. Zero fields do not filter.
type CodeFilter struct {
	AffiliateID int64
	OfferID     int64
	Code        string // case-insensitive
	// Owned keeps only what the affiliate API shows: codes the affiliate
	// holds (not Rejected) on offers with promo codes enabled.
	Owned bool
}

// Codes lists PromoCodes and PromoCodeSet entries from the cluster. A
// PromoCode's state is the one the manager wrote to status, so the portal,
// kubectl and the trackers agree; a set entry's state, which no status holds
// (a set's status counts), is computed as the manager computes a PromoCode's
// (see setEntries).
type Codes struct{ Reader client.Reader }

// List returns the codes matching f, ordered by offer id, code and affiliate.
func (c *Codes) List(ctx context.Context, f CodeFilter) ([]Code, error) {
	var opts []client.ListOption
	if f.AffiliateID != 0 {
		opts = append(opts, client.MatchingFields{indexAffiliate: strconv.FormatInt(f.AffiliateID, 10)})
	}
	var codes trackingv1alpha1.PromoCodeList
	if err := c.Reader.List(ctx, &codes, opts...); err != nil {
		return nil, err
	}
	var offers trackingv1alpha1.OfferList
	if err := c.Reader.List(ctx, &offers); err != nil {
		return nil, err
	}
	byName := make(map[types.NamespacedName]*trackingv1alpha1.Offer, len(offers.Items))
	for i := range offers.Items {
		o := &offers.Items[i]
		byName[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}] = o
	}
	out := []Code{}
	for i := range codes.Items {
		pc := &codes.Items[i]
		if f.Code != "" && !strings.EqualFold(pc.Spec.Code, f.Code) {
			continue
		}
		offer := byName[types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name}]
		if f.Owned && (offer == nil || !offer.Spec.Tracking.PromoCodes.Enabled || pc.Status.State == trackingv1alpha1.StateRejected) {
			continue
		}
		code := Code{
			Code: pc.Spec.Code, Description: pc.Spec.Description, State: string(pc.Status.State),
			AffiliateID: pc.Spec.AffiliateID, Ref: pc.Namespace + "/" + pc.Name, Offer: pc.Spec.OfferRef.Name,
			StartDate: timeOf(pc.Spec.StartDate), EndDate: timeOf(pc.Spec.EndDate),
		}
		if offer != nil {
			code.OfferID, code.OfferTitle = offer.Spec.ID, offer.Spec.Title
		}
		if f.OfferID != 0 && code.OfferID != f.OfferID {
			continue
		}
		out = append(out, code)
	}
	entries, err := c.setEntries(ctx, f, byName, time.Now())
	if err != nil {
		return nil, err
	}
	out = append(out, entries...)
	slices.SortFunc(out, func(a, b Code) int {
		if a.OfferID != b.OfferID {
			return cmp.Compare(a.OfferID, b.OfferID)
		}
		if c := strings.Compare(strings.ToUpper(a.Code), strings.ToUpper(b.Code)); c != 0 {
			return c
		}
		return cmp.Compare(a.AffiliateID, b.AffiliateID)
	})
	return out, nil
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func setAffiliates(o client.Object) []string {
	s := o.(*trackingv1alpha1.PromoCodeSet)
	seen := map[int64]struct{}{}
	var out []string
	for i := range s.Spec.Codes {
		if a := s.Spec.Codes[i].AffiliateID; !hasKey(seen, a) {
			seen[a] = struct{}{}
			out = append(out, strconv.FormatInt(a, 10))
		}
	}
	return out
}

func hasKey(m map[int64]struct{}, k int64) bool { _, ok := m[k]; return ok }

// setEntries lists the PromoCodeSet entries matching f, each with the state
// a PromoCode in its place would have: its claim resolved against every
// claim on its code (internal/kube, the manager's rule 4), and its Offer as
// the manager last judged it (the Offer's Ready condition, promo codes
// enabled), at instant now.
func (c *Codes) setEntries(ctx context.Context, f CodeFilter, offers map[types.NamespacedName]*trackingv1alpha1.Offer, now time.Time) ([]Code, error) {
	opts := []client.ListOption{client.UnsafeDisableDeepCopy}
	if f.AffiliateID != 0 {
		opts = append(opts, client.MatchingFields{indexAffiliate: strconv.FormatInt(f.AffiliateID, 10)})
	}
	var sets trackingv1alpha1.PromoCodeSetList
	if err := c.Reader.List(ctx, &sets, opts...); err != nil {
		return nil, err
	}
	type pick struct {
		set   *trackingv1alpha1.PromoCodeSet
		i     int
		claim *routing.Claim // nil: invalid entry
	}
	var picks []pick
	var folded []string
	for si := range sets.Items {
		s := &sets.Items[si]
		for i := range s.Spec.Codes {
			e := &s.Spec.Codes[i]
			if f.AffiliateID != 0 && e.AffiliateID != f.AffiliateID || f.Code != "" && !strings.EqualFold(e.Code, f.Code) {
				continue
			}
			p := pick{set: s, i: i, claim: kube.EntryClaim(s, i)}
			if p.claim != nil {
				folded = append(folded, p.claim.Folded)
			}
			picks = append(picks, p)
		}
	}
	if len(picks) == 0 {
		return nil, nil
	}
	groups, err := kube.Resolver{Reader: c.Reader}.ClaimsOn(ctx, folded)
	if err != nil {
		return nil, err
	}
	verdicts := map[string][]routing.CodeVerdict{}
	out := make([]Code, 0, len(picks))
	for _, p := range picks {
		s, e := p.set, &p.set.Spec.Codes[p.i]
		offer := offers[types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.OfferRef.Name}]
		state := trackingv1alpha1.StateRejected
		if p.claim != nil {
			g := groups[p.claim.Folded]
			vs, ok := verdicts[p.claim.Folded]
			if !ok {
				vs = routing.ResolveGroup(g)
				verdicts[p.claim.Folded] = vs
			}
			v := routing.CodeVerdict{Reason: routing.ReasonNotAccepted, Message: "not in the cache yet"}
			for j, o := range g {
				if o.Kind == p.claim.Kind && o.Ref == p.claim.Ref && o.Rank.Position == p.i {
					v = vs[j]
				}
			}
			state = kube.State(routing.StatusOf(p.claim, v, offerState(offer), now).State)
		}
		if f.Owned && (offer == nil || !offer.Spec.Tracking.PromoCodes.Enabled || state == trackingv1alpha1.StateRejected) {
			continue
		}
		start, end := kube.EntryDates(s, p.i)
		desc := e.Description
		if desc == "" {
			desc = s.Spec.Description
		}
		code := Code{
			Code: e.Code, Description: desc, State: string(state), AffiliateID: e.AffiliateID,
			Ref: kube.SetRoute(kube.RefOf(s)), Offer: s.Spec.OfferRef.Name, StartDate: utcOrNil(start), EndDate: utcOrNil(end),
		}
		if offer != nil {
			code.OfferID, code.OfferTitle = offer.Spec.ID, offer.Spec.Title
		}
		if f.OfferID != 0 && code.OfferID != f.OfferID {
			continue
		}
		out = append(out, code)
	}
	return out, nil
}

// offerState is an Offer as the manager last judged it: its Ready
// condition and whether promo codes are enabled.
func offerState(o *trackingv1alpha1.Offer) routing.OfferState {
	if o == nil {
		return routing.OfferState{}
	}
	return routing.OfferState{Exists: true, ID: o.Spec.ID, Enabled: o.Spec.Tracking.PromoCodes.Enabled,
		Ready: meta.IsStatusConditionTrue(o.Status.Conditions, trackingv1alpha1.ConditionReady)}
}

func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
