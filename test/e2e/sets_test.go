package e2e

import (
	"strings"
	"testing"

	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

// TestImportedCodeAnswersPostback: a PromoCodeSet applied with kubectl is
// served by the tracker like PromoCodes; the conversion's promo_code_ref
// names the set (namespace/promocodeset/name); kubectl get promo lists the
// set with its counts; a PromoCode of another affiliate on a code the set
// holds is refused naming the set.
func TestImportedCodeAnswersPostback(t *testing.T) {
	namespace(t, "e2e-set")
	apply(t, fixtures.OfferYAML("e2e-set", "launch", 501, true))
	apply(t, fixtures.PromoCodeSetYAML("e2e-set", "imported-0001", "launch", 5151, "IMPORT1", "Import2", "IMPORT3"))
	if err := devstack.WaitServable(ctxFor(t), trackerURL(), "IMPORT2", 0); err != nil {
		t.Fatal(err)
	}

	r := track(t, trackerURL(), "code", "import2", "amount", "40", "adv_order_id", "e2e-set-order-1")
	if r.HTTPStatus != 200 || r.Status != "approved" || r.ConversionID == "" {
		t.Fatalf("postback: %+v", r)
	}
	got := conversion(t, r.ConversionID)
	want := row{code: "Import2", ref: "e2e-set/promocodeset/imported-0001", status: "approved", currency: "EUR", source: "postback",
		offer: 501, affiliate: 5151, goal: 1, amount: "40", payout: "4", revenue: "8.00"}
	if got != want {
		t.Fatalf("row %+v\nwant %+v", got, want)
	}

	eventually(t, "kubectl get promo lists the set with its counts", func() string {
		out := kubectl(t, "get", "promo", "-n", "e2e-set")
		for _, w := range []string{"promocodeset.tracking.promocodes.dev/imported-0001", "launch"} {
			if !strings.Contains(out, w) {
				return out
			}
		}
		st := kubectl(t, "get", "promocodeset", "imported-0001", "-n", "e2e-set",
			"-o", "jsonpath={.status.codes}/{.status.active}/{.status.rejected}/{.status.conditions[?(@.type==\"Ready\")].status}")
		if st != "3/3/0/True" {
			return "status " + st
		}
		return ""
	})

	out, err := stack.Kubectl(ctxFor(t), strings.NewReader(fixtures.PromoCodeYAML("e2e-set", "stolen", "IMPORT3", "launch", 9, "")), "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "PromoCodeSet e2e-set/imported-0001") || !strings.Contains(out, "affiliate 5151") {
		t.Fatalf("a code the set holds should be refused naming the set: %v %s", err, out)
	}

	// Removing an entry stops it at the tracker; the others keep serving.
	apply(t, fixtures.PromoCodeSetYAML("e2e-set", "imported-0001", "launch", 5151, "IMPORT1", "Import2"))
	wantReason(t, "removed entry", "unknown_code", "code", "IMPORT3")
	wantReason(t, "kept entry", "unknown_goal", "code", "IMPORT1", "goal_alias", devstack.ProbeGoalAlias)
}
