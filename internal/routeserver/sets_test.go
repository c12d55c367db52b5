package routeserver

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

// TestSetEditPublishesOneGroup: a 5,000-entry PromoCodeSet is routed with
// its entries' promo_code_ref; editing one entry publishes a delta of that
// one code group, a status write publishes nothing, and deleting the set
// publishes every group it held, emptied.
func TestSetEditPublishesOneGroup(t *testing.T) {
	ctx := context.Background()
	const n = trackingv1alpha1.MaxPromoCodeSetEntries
	entries := make([]trackingv1alpha1.PromoCodeSetEntry, n)
	for i := range entries {
		entries[i] = fixtures.Entry(fmt.Sprintf("BIG%05d", i), 42)
	}
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sets"}}, offer("sets", "o", 80, true),
		fixtures.PromoCodeSet("sets", "big", "o", entries...))
	s, tb := snapshotWith(t, base, "BIG04999")
	if tb.Len() < n {
		t.Fatalf("snapshot has %d codes, want the set's %d", tb.Len(), n)
	}
	if g := tb.Group("BIG00000"); len(g) != 1 || g[0].Ref != "sets/promocodeset/big" || g[0].OfferRef != "sets/o" {
		t.Fatalf("group BIG00000 %+v, want the set's entry routed as sets/promocodeset/big", g)
	}

	update := func(mutate func(*trackingv1alpha1.PromoCodeSet)) {
		t.Helper()
		var set trackingv1alpha1.PromoCodeSet
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "sets", Name: "big"}, &set); err != nil {
			t.Fatal(err)
		}
		mutate(&set)
		if err := k8s.Update(ctx, &set); err != nil {
			t.Fatal(err)
		}
	}
	edited := time.Now()
	end := metav1.NewTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	update(func(set *trackingv1alpha1.PromoCodeSet) {
		set.Spec.Codes[1234].EndDate = &end
		set.Spec.Codes[77].Description = "descriptions do not route"
	})
	written := time.Now()
	d := s.next(t)
	t.Logf("one-entry edit of a %d-entry set: the API server took %s, the delta came %s later", n, written.Sub(edited), time.Since(written))
	if !slices.Equal(folds(d.Delta), []string{"BIG01234"}) || len(d.Delta.Offers) != 0 {
		t.Fatalf("delta of %d groups %v, want BIG01234 alone", len(d.Delta.Codes), first(folds(d.Delta), 5))
	}
	if e := d.Delta.Codes[0].Entries; len(e) != 1 || e[0].End != routing.DateOf(end.Time) || e[0].Ref != "sets/promocodeset/big" {
		t.Fatalf("edited group %+v", e)
	}

	// A status write (the controller's, here by hand) changes no generation:
	// nothing is recompiled, so the next delta is the next real change.
	var set trackingv1alpha1.PromoCodeSet
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "sets", Name: "big"}, &set); err != nil {
		t.Fatal(err)
	}
	set.Status.Codes, set.Status.Active = n, n
	if err := k8s.Status().Update(ctx, &set); err != nil {
		t.Fatal(err)
	}
	// Renaming an entry: the old code's group is deleted, the new one added.
	update(func(set *trackingv1alpha1.PromoCodeSet) { set.Spec.Codes[9].Code = "RENAMED9" })
	d = s.next(t)
	got := folds(d.Delta)
	slices.Sort(got)
	if !slices.Equal(got, []string{"BIG00009", "RENAMED9"}) {
		t.Fatalf("rename delta %v, want BIG00009 (deleted) and RENAMED9", first(got, 5))
	}

	deleted := time.Now()
	if err := k8s.Delete(ctx, fixtures.PromoCodeSet("sets", "big", "o")); err != nil {
		t.Fatal(err)
	}
	d = s.next(t)
	t.Logf("deleting the set published %d empty groups in %s", len(d.Delta.Codes), time.Since(deleted))
	if len(d.Delta.Codes) != n {
		t.Fatalf("delete delta has %d groups, want %d", len(d.Delta.Codes), n)
	}
	for _, g := range d.Delta.Codes {
		if len(g.Entries) != 0 {
			t.Fatalf("group %s still routed after the set's deletion: %+v", g.Folded, g.Entries)
		}
	}
	tb = tb.Apply(*d.Delta)
	if _, out := tb.Lookup(&routing.Query{Code: "big00000", At: time.Now()}); out != routing.UnknownCode {
		t.Fatalf("after the deletion: %s", out)
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }
