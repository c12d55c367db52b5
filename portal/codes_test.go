package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

// TestAffiliateSetEntries: the affiliate's widget lists the PromoCodeSet
// entries the affiliate owns, each with the state a PromoCode would have
// (Active, Scheduled by the entry's dates), and leaves out the entry that
// lost its code (a folded duplicate at a later position) and other
// affiliates' entries.
func TestAffiliateSetEntries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	o := fixtures.Offer(f.ns, "summer", 7, true)
	o.Spec.Title = "Summer sale"
	if err := f.kube.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	// No manager runs here: the test writes the Offer's verdict.
	meta.SetStatusCondition(&o.Status.Conditions, metav1.Condition{Type: trackingv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Valid"})
	if err := f.kube.Status().Update(ctx, o); err != nil {
		t.Fatal(err)
	}
	later := metav1.NewTime(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	scheduled := fixtures.Entry("SOON7", 42)
	scheduled.StartDate = &later
	scheduled.Description = "from 2031"
	set := fixtures.PromoCodeSet(f.ns, "influencers", "summer",
		fixtures.Entry("ANNA7", 42), scheduled, fixtures.Entry("anna7", 42), fixtures.Entry("BOB7", 44))
	set.Spec.Description = "Influencer programme"
	if err := f.kube.Create(ctx, set); err != nil {
		t.Fatal(err)
	}

	want := []string{"ANNA7@7", "SOON7@7"}
	var got []Code
	poll.Until(t, 30*time.Second, func() (bool, string) {
		status, _, body := f.get(t, "/api/v1/affiliates/42/promo-codes")
		var out struct{ Items []Code }
		_ = json.Unmarshal(body, &out)
		got = out.Items
		return status == 200 && slices.Equal(keys(got), want), fmt.Sprintf("affiliate 42 sees %v (%d), want %v", keys(got), status, want)
	})
	if a := got[0]; a.State != "Active" || a.Description != "Influencer programme" || a.OfferTitle != "Summer sale" || a.StartDate != nil {
		t.Errorf("ANNA7: %+v", a)
	}
	if s := got[1]; s.State != "Scheduled" || s.Description != "from 2031" || s.StartDate == nil || !s.StartDate.Equal(later.Time) {
		t.Errorf("SOON7: %+v", s)
	}
	// The back-office page shows the lost entry as Rejected.
	_, _, page := f.get(t, "/?affiliate_id=42")
	if !strings.Contains(string(page), "anna7") || !strings.Contains(string(page), "Rejected") {
		t.Errorf("page for affiliate 42 lacks the rejected entry anna7")
	}
}
