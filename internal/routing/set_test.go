package routing

import (
	"strings"
	"testing"
	"time"
)

// entry is the claim of a PromoCodeSet's entry, as internal/kube builds it.
func entry(ns, set, c, offerName string, affiliate int64, created time.Duration, pos int) *Claim {
	ref := Ref{Namespace: ns, Name: set}
	return &Claim{
		Folded: Fold(c), Code: c, Ref: ref, Kind: "PromoCodeSet", Route: ns + "/promocodeset/" + set,
		OfferRef: Ref{Namespace: ns, Name: offerName}, AffiliateID: affiliate,
		Rank: Rank{Created: t0.Add(created), Ref: ref, Position: pos},
	}
}

// TestResolveGroupSetsAndPromoCodes: set entries and PromoCodes sharing a
// code resolve together, in both directions (SPEC §2 PromoCodeSet, rule 4
// with the set's rank).
func TestResolveGroupSetsAndPromoCodes(t *testing.T) {
	type want struct {
		accepted bool
		reason   string
		holder   string // named in the message, with its kind
	}
	for _, tc := range []struct {
		name   string
		claims []*Claim
		want   []want // by index of claims
	}{{
		name: "an entry beats a younger PromoCode of another affiliate",
		claims: []*Claim{
			code("shop", "late", "anna10", "summer", 7, time.Second),
			entry("shop", "influencers", "ANNA10", "summer", 42, 0, 3),
		},
		want: []want{{false, ReasonCodeOwnedByAnotherAffiliate, "PromoCodeSet shop/influencers"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "an older PromoCode beats an entry of another affiliate",
		claims: []*Claim{
			entry("shop", "influencers", "ANNA10", "summer", 42, time.Second, 0),
			code("shop", "early", "anna10", "winter", 7, 0),
		},
		want: []want{{false, ReasonCodeOwnedByAnotherAffiliate, "PromoCode shop/early"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "an older PromoCode on the same offer: the entry is a duplicate",
		claims: []*Claim{
			entry("shop", "influencers", "ANNA10", "summer", 42, time.Second, 0),
			code("shop", "early", "ANNA10", "summer", 42, 0),
		},
		want: []want{{false, ReasonDuplicateCode, "PromoCode shop/early"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "the same affiliate on another offer is allowed, both ways",
		claims: []*Claim{
			code("shop", "pc", "ANNA10", "winter", 42, time.Second),
			entry("shop", "influencers", "anna10", "summer", 42, 0, 0),
			entry("shop", "other", "Anna10", "autumn", 42, 2*time.Second, 17),
		},
		want: []want{{true, ReasonCodeAccepted, ""}, {true, ReasonCodeAccepted, ""}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "inside one set the earlier position wins: the later folded duplicate is DuplicateCode",
		claims: []*Claim{
			entry("shop", "s", "anna10", "summer", 42, 0, 9),
			entry("shop", "s", "ANNA10", "summer", 42, 0, 2),
		},
		want: []want{{false, ReasonDuplicateCode, "PromoCodeSet shop/s"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "inside one set another affiliate at a later position loses",
		claims: []*Claim{
			entry("shop", "s", "ANNA10", "summer", 43, 0, 1),
			entry("shop", "s", "Anna10", "summer", 42, 0, 0),
		},
		want: []want{{false, ReasonCodeOwnedByAnotherAffiliate, "PromoCodeSet shop/s"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "an older set beats a younger set",
		claims: []*Claim{
			entry("shop", "b-new", "ANNA10", "summer", 7, time.Second, 0),
			entry("shop", "z-old", "ANNA10", "summer", 42, 0, 4999),
		},
		want: []want{{false, ReasonCodeOwnedByAnotherAffiliate, "PromoCodeSet shop/z-old"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "a PromoCode and a set of one namespace/name created in one second: the PromoCode ranks first",
		claims: []*Claim{
			entry("shop", "x", "ANNA10", "summer", 7, 0, 0),
			code("shop", "x", "ANNA10", "summer", 42, 0),
		},
		want: []want{{false, ReasonCodeOwnedByAnotherAffiliate, "PromoCode shop/x"}, {true, ReasonCodeAccepted, ""}},
	}, {
		name: "the set entry deleted: the younger PromoCode is promoted",
		claims: []*Claim{
			code("shop", "late", "anna10", "summer", 7, time.Second),
		},
		want: []want{{true, ReasonCodeAccepted, ""}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := ResolveGroup(tc.claims)
			if len(got) != len(tc.claims) {
				t.Fatalf("got %d verdicts for %d claims", len(got), len(tc.claims))
			}
			for i, w := range tc.want {
				v := got[i]
				if v.Accepted != w.accepted || v.Reason != w.reason {
					t.Errorf("claim %d (%s): got accepted=%v reason=%s, want %v %s (%s)", i, tc.claims[i].name(), v.Accepted, v.Reason, w.accepted, w.reason, v.Message)
				}
				if w.holder != "" && !strings.Contains(v.Message, w.holder+",") && !strings.Contains(v.Message, w.holder+")") {
					t.Errorf("claim %d: message %q does not name %s", i, v.Message, w.holder)
				}
			}
		})
	}
}

// TestCompileGroupSetEntries: accepted entries reach the table oldest first,
// with the set's route ref, which never equals a PromoCode's namespace/name.
func TestCompileGroupSetEntries(t *testing.T) {
	g := CompileGroup("ANNA10", []*Claim{
		code("shop", "pc", "anna10", "winter", 42, time.Second),
		entry("shop", "influencers", "ANNA10", "summer", 42, 0, 7),
		code("shop", "intruder", "ANNA10", "autumn", 9, 2*time.Second),
	})
	if len(g.Entries) != 2 {
		t.Fatalf("entries %+v, want the set's and the PromoCode's", g.Entries)
	}
	if e := g.Entries[0]; e.Ref != "shop/promocodeset/influencers" || e.Code != "ANNA10" || e.OfferRef != "shop/summer" || e.AffiliateID != 42 {
		t.Errorf("first entry %+v, want the set's entry routed as shop/promocodeset/influencers", e)
	}
	if e := g.Entries[1]; e.Ref != "shop/pc" {
		t.Errorf("second entry %+v, want the PromoCode shop/pc", e)
	}
	tbl := NewTable(Snapshot{Version: "1", Offers: []Offer{{Ref: "shop/summer", ID: 7, Currency: "USD", Enabled: true,
		Goals: []Goal{{ID: 1, Alias: "sale", Status: "approved"}}}}, Codes: []CodeGroup{g}})
	m, out := tbl.Lookup(&Query{Code: "anna10", At: t0})
	if out != OK || m.Entry.Ref != "shop/promocodeset/influencers" {
		t.Fatalf("lookup: %v %+v, want the set's entry", out, m.Entry)
	}
}

// TestWouldRejectAgainstSetEntry: the PromoCode webhook's question names the
// set holding the code; a set entry never filters out a PromoCode of the same
// namespace/name (another object).
func TestWouldRejectAgainstSetEntry(t *testing.T) {
	existing := []*Claim{entry("shop", "pc", "ANNA10", "summer", 42, 0, 0)}
	fresh := code("shop", "pc", "anna10", "winter", 7, 0)
	fresh.Rank.Created = time.Time{}
	v, rejected := WouldReject(existing, fresh, t0.Add(time.Hour))
	if !rejected || v.Reason != ReasonCodeOwnedByAnotherAffiliate || !strings.Contains(v.Message, "PromoCodeSet shop/pc") ||
		!strings.Contains(v.Message, "affiliate 42") {
		t.Fatalf("verdict %+v, want a refusal naming PromoCodeSet shop/pc and affiliate 42", v)
	}
}
