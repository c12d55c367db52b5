package kube

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// KindPromoCodeSet is the kind a set entry's claim names in messages.
const KindPromoCodeSet = "PromoCodeSet"

// IndexSetFoldedCode finds PromoCodeSets by the folded code of any entry.
// It is not a client-go index but the folded-code directory of a cache made
// by NewCache (see setDirectory), which SetupIndexes installs; read it with
// Resolver.SetsWithCodes. PromoCodeSets are also indexed by IndexOfferRef
// ("namespace/offerRef.name").
const IndexSetFoldedCode = "spec.codes.code.folded"

// SetRoute is the promo_code_ref conversions record for an entry of the set
// ns/name: "<namespace>/promocodeset/<name>". A name cannot contain "/", so
// it never equals a PromoCode's "<namespace>/<name>".
func SetRoute(r routing.Ref) string { return r.Namespace + "/promocodeset/" + r.Name }

// SetOfferKey returns the key of the Offer a PromoCodeSet points at.
func SetOfferKey(s *trackingv1alpha1.PromoCodeSet) client.ObjectKey {
	return client.ObjectKey{Namespace: s.Namespace, Name: s.Spec.OfferRef.Name}
}

// EntryDates returns an entry's effective dates: the entry's own, else the
// set's (zero: unbounded).
func EntryDates(s *trackingv1alpha1.PromoCodeSet, i int) (start, end time.Time) {
	e := &s.Spec.Codes[i]
	start, end = timeOf(s.Spec.StartDate), timeOf(s.Spec.EndDate)
	if e.StartDate != nil {
		start = e.StartDate.Time
	}
	if e.EndDate != nil {
		end = e.EndDate.Time
	}
	return start, end
}

// EntryInvalid says why entry i cannot claim its code (InvalidSpec), or ""
// when it can: a code outside [A-Za-z0-9]{1,64} (the schema refuses it, the
// check is a safety net) or effective dates, the entry's over the set's,
// whose endDate is not after the startDate.
func EntryInvalid(s *trackingv1alpha1.PromoCodeSet, i int) string {
	e := &s.Spec.Codes[i]
	if !routing.ValidCode(e.Code) {
		return fmt.Sprintf("code %q is not 1-64 Latin letters and digits", e.Code)
	}
	if start, end := EntryDates(s, i); !start.IsZero() && !end.IsZero() && !end.After(start) {
		return fmt.Sprintf("code %q: its effective endDate %s is not after its effective startDate %s (an entry's dates override the set's)",
			e.Code, end.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))
	}
	return ""
}

// EntryClaim turns entry i of a set into its claim: it ranks with the set's
// (creationTimestamp, namespace, name), then its position in spec.codes.
// It returns nil when the entry is invalid (EntryInvalid).
func EntryClaim(s *trackingv1alpha1.PromoCodeSet, i int) *routing.Claim {
	if EntryInvalid(s, i) != "" {
		return nil
	}
	e := &s.Spec.Codes[i]
	start, end := EntryDates(s, i)
	desc := e.Description
	if desc == "" {
		desc = s.Spec.Description
	}
	ref := RefOf(s)
	rank := rankOf(s)
	rank.Position = i
	return &routing.Claim{
		Folded: routing.Fold(e.Code), Code: e.Code, Ref: ref, Kind: KindPromoCodeSet, Route: SetRoute(ref),
		OfferRef:    routing.Ref{Namespace: s.Namespace, Name: s.Spec.OfferRef.Name},
		AffiliateID: e.AffiliateID, Rank: rank, Start: start, End: end, Description: desc,
	}
}

// SetClaims turns every entry of a set into its claim, aligned with
// spec.codes: nil where the entry is invalid.
func SetClaims(s *trackingv1alpha1.PromoCodeSet) []*routing.Claim {
	out := make([]*routing.Claim, len(s.Spec.Codes))
	for i := range s.Spec.Codes {
		out[i] = EntryClaim(s, i)
	}
	return out
}

// FoldedCodes returns each distinct folded code of a set once (what the
// folded-code directory records for it).
func FoldedCodes(s *trackingv1alpha1.PromoCodeSet) []string {
	seen := make(map[string]struct{}, len(s.Spec.Codes))
	out := make([]string, 0, len(s.Spec.Codes))
	for i := range s.Spec.Codes {
		f := routing.Fold(s.Spec.Codes[i].Code)
		if _, dup := seen[f]; !dup {
			seen[f] = struct{}{}
			out = append(out, f)
		}
	}
	return out
}

var sigSeed = maphash.MakeSeed()

// CodeSignatures maps each folded code of a set to a hash of what its
// entries on that code route: code as written, affiliate, effective dates and
// validity, in spec order (the order that ranks them). Two versions of a set
// route a code the same way exactly when its signatures are equal, whatever
// else changed (descriptions, other entries, their positions), so comparing
// them finds the code groups an edit touched. A nil set has none.
func CodeSignatures(s *trackingv1alpha1.PromoCodeSet) map[string]uint64 {
	if s == nil {
		return nil
	}
	hs := make(map[string]*maphash.Hash, len(s.Spec.Codes))
	var buf [8]byte
	for i := range s.Spec.Codes {
		e := &s.Spec.Codes[i]
		f := routing.Fold(e.Code)
		h := hs[f]
		if h == nil {
			h = &maphash.Hash{}
			h.SetSeed(sigSeed)
			hs[f] = h
		}
		_, _ = h.WriteString(e.Code)
		binary.LittleEndian.PutUint64(buf[:], uint64(e.AffiliateID))
		_, _ = h.Write(buf[:])
		start, end := EntryDates(s, i)
		for _, t := range []time.Time{start, end} {
			binary.LittleEndian.PutUint64(buf[:], uint64(t.UnixNano()))
			if t.IsZero() {
				clear(buf[:])
			}
			_, _ = h.Write(buf[:])
		}
		if EntryInvalid(s, i) != "" {
			_ = h.WriteByte(1)
		}
		_ = h.WriteByte(0)
	}
	out := make(map[string]uint64, len(hs))
	for f, h := range hs {
		out[f] = h.Sum64()
	}
	return out
}

// ChangedCodes returns the folded codes whose signatures differ between two
// CodeSignatures results: added, removed or routed differently.
func ChangedCodes(old, cur map[string]uint64) []string {
	var out []string
	for f, s := range cur {
		if o, ok := old[f]; !ok || o != s {
			out = append(out, f)
		}
	}
	for f := range old {
		if _, ok := cur[f]; !ok {
			out = append(out, f)
		}
	}
	return out
}

// SetsWithCodes lists, each once, the PromoCodeSets the folded-code
// directory holds for any of the folded codes, in one lookup. They are the
// cache's own objects (no deep copy, 5,000 entries each): read them, never
// change them. The directory may be a version ahead of the cache (see
// setDirectory), so a set listed may lack the codes in the version returned:
// callers check its entries, as ClaimsOn does.
func (r Resolver) SetsWithCodes(ctx context.Context, folded []string) ([]*trackingv1alpha1.PromoCodeSet, error) {
	if len(folded) == 0 {
		return nil, nil
	}
	var list trackingv1alpha1.PromoCodeSetList
	if err := r.Reader.List(ctx, &list, foldedCodesIn(folded), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing PromoCodeSets with any of %d codes: %w", len(folded), err)
	}
	out := make([]*trackingv1alpha1.PromoCodeSet, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// Claims returns every claim on one folded code, across PromoCodes and
// PromoCodeSet entries: what rule 4 resolves together.
func (r Resolver) Claims(ctx context.Context, folded string) ([]*routing.Claim, error) {
	m, err := r.ClaimsOn(ctx, []string{folded})
	return m[folded], err
}

// ClaimsOn returns every claim on each of the folded codes, across
// PromoCodes and PromoCodeSet entries. The sets sharing any of the codes
// come from one directory lookup (SetsWithCodes), and each is read once, in
// one pass over its entries, however many of its codes are asked for:
// resolving a whole 5,000-entry set costs its entries plus those of the sets
// it shares codes with, not 5,000 passes. Invalid entries claim nothing.
func (r Resolver) ClaimsOn(ctx context.Context, folded []string) (map[string][]*routing.Claim, error) {
	want := make(map[string]struct{}, len(folded))
	for _, f := range folded {
		want[f] = struct{}{}
	}
	out := make(map[string][]*routing.Claim, len(want))
	for f := range want {
		var pcs trackingv1alpha1.PromoCodeList
		if err := r.Reader.List(ctx, &pcs, client.MatchingFields{IndexFoldedCode: f}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing PromoCodes with code %s: %w", f, err)
		}
		for i := range pcs.Items {
			out[f] = append(out[f], Claim(&pcs.Items[i]))
		}
	}
	sets, err := r.SetsWithCodes(ctx, slices.Collect(maps.Keys(want)))
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		for i := range s.Spec.Codes {
			f := routing.Fold(s.Spec.Codes[i].Code)
			if _, ok := want[f]; !ok {
				continue
			}
			if c := EntryClaim(s, i); c != nil {
				out[f] = append(out[f], c)
			}
		}
	}
	return out, nil
}

// ResolveSet decides every entry of a set against every other claim on its
// codes (PromoCodes, other sets, the set's own entries by position): the
// entries' claims and verdicts, aligned with spec.codes. An invalid entry
// has a nil claim and an InvalidSpec verdict. The set's own entries are taken
// from s, not from the cache, which may hold an older version.
func (r Resolver) ResolveSet(ctx context.Context, s *trackingv1alpha1.PromoCodeSet) ([]*routing.Claim, []routing.CodeVerdict, error) {
	return r.ResolveSetCodes(ctx, s, nil)
}

// ResolveSetCodes is ResolveSet for the entries whose folded code is in only
// (every entry when only is nil); the other entries' verdicts are left zero.
// The webhook judges an edit's new entries alone: one changed entry of a
// 5,000-entry set costs the claims on its code, not on all 5,000.
func (r Resolver) ResolveSetCodes(ctx context.Context, s *trackingv1alpha1.PromoCodeSet, only map[string]bool) ([]*routing.Claim, []routing.CodeVerdict, error) {
	claims := SetClaims(s)
	verdicts := make([]routing.CodeVerdict, len(claims))
	size := len(claims)
	if only != nil {
		size = min(size, len(only))
	}
	own := make(map[string][]int, size)
	for i, c := range claims {
		if c == nil {
			verdicts[i] = routing.CodeVerdict{Reason: routing.ReasonInvalidSpec, Message: EntryInvalid(s, i)}
			continue
		}
		if only == nil || only[c.Folded] {
			own[c.Folded] = append(own[c.Folded], i)
		}
	}
	folded := make([]string, 0, len(own))
	for f := range own {
		folded = append(folded, f)
	}
	others, err := r.ClaimsOn(ctx, folded)
	if err != nil {
		return nil, nil, err
	}
	ref := RefOf(s)
	for f, idx := range own {
		group := make([]*routing.Claim, 0, len(others[f])+len(idx))
		for _, c := range others[f] {
			if c.Kind != KindPromoCodeSet || c.Ref != ref {
				group = append(group, c)
			}
		}
		n := len(group)
		for _, i := range idx {
			group = append(group, claims[i])
		}
		vs := routing.ResolveGroup(group)
		for k, i := range idx {
			verdicts[i] = vs[n+k]
		}
	}
	return claims, verdicts, nil
}
