package kube

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

func testSet(entries ...trackingv1alpha1.PromoCodeSetEntry) *trackingv1alpha1.PromoCodeSet {
	return &trackingv1alpha1.PromoCodeSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "influencers", CreationTimestamp: metav1.NewTime(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))},
		Spec: trackingv1alpha1.PromoCodeSetSpec{OfferRef: trackingv1alpha1.LocalOfferReference{Name: "summer"}, Description: "programme",
			Codes: entries},
	}
}

func at(s string) *metav1.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	m := metav1.NewTime(t)
	return &m
}

func TestEntryClaim(t *testing.T) {
	s := testSet(trackingv1alpha1.PromoCodeSetEntry{Code: "anna10", AffiliateID: 42},
		trackingv1alpha1.PromoCodeSetEntry{Code: "BOB15", AffiliateID: 43, Description: "Bob's", EndDate: at("2027-06-01T00:00:00Z")},
		trackingv1alpha1.PromoCodeSetEntry{Code: "EMPTY1", AffiliateID: 43, EndDate: at("2026-12-01T00:00:00Z")})
	s.Spec.StartDate = at("2027-01-01T00:00:00Z")
	cs := SetClaims(s)
	a := cs[0]
	if a.Folded != "ANNA10" || a.Kind != KindPromoCodeSet || a.Route != "shop/promocodeset/influencers" || a.Rank.Position != 0 ||
		a.Ref != (routing.Ref{Namespace: "shop", Name: "influencers"}) || a.Description != "programme" || !a.Start.Equal(s.Spec.StartDate.Time) || !a.End.IsZero() {
		t.Errorf("entry 0: %+v", a)
	}
	if b := cs[1]; b.Rank.Position != 1 || b.Description != "Bob's" || !b.End.Equal(at("2027-06-01T00:00:00Z").Time) || !b.Start.Equal(s.Spec.StartDate.Time) {
		t.Errorf("entry 1: the entry's endDate and description over the set's: %+v", b)
	}
	if cs[2] != nil || EntryInvalid(s, 2) == "" {
		t.Errorf("entry 2 ends before the set starts: it must claim nothing (InvalidSpec), got %+v", cs[2])
	}
	if got := FoldedCodes(testSet(trackingv1alpha1.PromoCodeSetEntry{Code: "a1"}, trackingv1alpha1.PromoCodeSetEntry{Code: "A1"},
		trackingv1alpha1.PromoCodeSetEntry{Code: "b2"})); !slices.Equal(got, []string{"A1", "B2"}) {
		t.Errorf("FoldedCodes %v, want each folded code once", got)
	}
}

// TestChangedCodes: only the codes whose entries route differently move.
func TestChangedCodes(t *testing.T) {
	base := func() *trackingv1alpha1.PromoCodeSet {
		return testSet(trackingv1alpha1.PromoCodeSetEntry{Code: "A1", AffiliateID: 1}, trackingv1alpha1.PromoCodeSetEntry{Code: "B2", AffiliateID: 1},
			trackingv1alpha1.PromoCodeSetEntry{Code: "c3", AffiliateID: 1}, trackingv1alpha1.PromoCodeSetEntry{Code: "C3", AffiliateID: 2})
	}
	for _, tc := range []struct {
		name   string
		mutate func(*trackingv1alpha1.PromoCodeSet)
		want   []string
	}{
		{"nothing", func(*trackingv1alpha1.PromoCodeSet) {}, nil},
		{"a description", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[0].Description = "x"; s.Spec.Description = "y" }, nil},
		{"an affiliate", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[1].AffiliateID = 9 }, []string{"B2"}},
		{"an entry's date", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[0].EndDate = at("2030-01-01T00:00:00Z") }, []string{"A1"}},
		{"the set's date: every code", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.EndDate = at("2030-01-01T00:00:00Z") }, []string{"A1", "B2", "C3"}},
		{"a rename", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[0].Code = "Z9" }, []string{"A1", "Z9"}},
		{"a removal", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes = s.Spec.Codes[1:] }, []string{"A1"}},
		{"moving other entries", func(s *trackingv1alpha1.PromoCodeSet) {
			s.Spec.Codes[0], s.Spec.Codes[1] = s.Spec.Codes[1], s.Spec.Codes[0]
		}, nil},
		{"swapping folded duplicates: their order ranks them", func(s *trackingv1alpha1.PromoCodeSet) {
			s.Spec.Codes[2], s.Spec.Codes[3] = s.Spec.Codes[3], s.Spec.Codes[2]
		}, []string{"C3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.mutate(s)
			got := ChangedCodes(CodeSignatures(base()), CodeSignatures(s))
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("changed %v, want %v", got, tc.want)
			}
		})
	}
	if got := ChangedCodes(CodeSignatures(base()), CodeSignatures(nil)); len(got) != 3 {
		t.Errorf("a deleted set changes all its codes, got %v", got)
	}
}
