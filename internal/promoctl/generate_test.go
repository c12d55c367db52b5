package promoctl_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/promoctl"
	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

// TestGenerateAvoidsEveryExistingCode crowds a small space (prefix Z, two
// symbols: 1,024 codes) with 400 existing codes — set entries in lower case
// and PromoCodes, in other namespaces — so a generator that did not look
// would collide almost surely (each draw hits with p ≈ 0.4).
func TestGenerateAvoidsEveryExistingCode(t *testing.T) {
	ctx := context.Background()
	nsA, nsB := newNamespace(t), newNamespace(t)
	var all []string
	for _, a := range promoctl.Alphabet {
		for _, b := range promoctl.Alphabet {
			all = append(all, "Z"+string(a)+string(b))
		}
	}
	taken := map[string]bool{}
	var entries []trackingv1alpha1.PromoCodeSetEntry
	for i := 0; i < 390; i++ {
		code := all[(i*7)%len(all)]
		taken[code] = true
		entries = append(entries, trackingv1alpha1.PromoCodeSetEntry{Code: strings.ToLower(code), AffiliateID: 5})
	}
	set := &trackingv1alpha1.PromoCodeSet{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "seeded"},
		Spec: trackingv1alpha1.PromoCodeSetSpec{OfferRef: trackingv1alpha1.LocalOfferReference{Name: "x"}, Codes: entries}}
	if err := k8sClient.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		code := all[(1000+i*3)%len(all)]
		if taken[code] {
			continue
		}
		taken[code] = true
		if err := k8sClient.Create(ctx, fixtures.PromoCode(nsB, fmt.Sprintf("pc-%d", i), code, "x", 6)); err != nil {
			t.Fatal(err)
		}
	}

	r := mustRun(t, "", "generate", "--count", "300", "--length", "2", "--prefix", "Z", "--affiliate", "77", "--offer", "o", "-n", nsA)
	rows, err := csv.NewReader(strings.NewReader(r.out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); got != "code,affiliate_id,start_date,end_date,description" {
		t.Fatalf("header %q", got)
	}
	codes := rows[1:]
	if len(codes) != 300 {
		t.Fatalf("%d codes, want 300", len(codes))
	}
	seen := map[string]bool{}
	for _, row := range codes {
		c := row[0]
		if len(c) != 3 || c[0] != 'Z' {
			t.Errorf("code %q: want Z and 2 symbols", c)
		}
		for _, ch := range c[1:] {
			if !strings.ContainsRune(promoctl.Alphabet, ch) {
				t.Errorf("code %q has %q, not in the alphabet", c, ch)
			}
		}
		if taken[routing.Fold(c)] {
			t.Errorf("code %s collides with an existing code", c)
		}
		if seen[c] {
			t.Errorf("code %s twice in the batch", c)
		}
		seen[c] = true
		if row[1] != "77" {
			t.Errorf("affiliate %q", row[1])
		}
	}
	if len(sets(t, nsA)) != 1 {
		t.Errorf("generate without --apply applied something")
	}

	// The space left (1024-400 codes) cannot hold 400 more with half free.
	if r := kubectlPromo(t, "", "generate", "--count", "400", "--length", "2", "--prefix", "Z", "--affiliate", "77", "--offer", "o"); r.err == nil ||
		!strings.Contains(r.err.Error(), "too little room") {
		t.Errorf("a crowded space: err = %v", r.err)
	}
	if r := kubectlPromo(t, "", "generate", "--count", "600", "--length", "2", "--affiliate", "77", "--offer", "o"); r.err == nil ||
		!strings.Contains(r.err.Error(), "too few for --count 600") {
		t.Errorf("a too small space: err = %v", r.err)
	}
}

func TestGenerateApply(t *testing.T) {
	ns := newNamespace(t)
	r := mustRun(t, "", "generate", "--count", "50", "--length", "10", "--prefix", "VIP", "--affiliate", "9", "--offer", "o",
		"--apply", "--set-prefix", "vip", "--end-date", "2030-01-01T00:00:00Z", "-n", ns)
	got := sets(t, ns)
	s := got["vip-0000"]
	if len(got) != 1 || s == nil || len(s.Spec.Codes) != 50 {
		t.Fatalf("sets %v\n%s", got, r.out)
	}
	for _, e := range s.Spec.Codes {
		if !strings.HasPrefix(e.Code, "VIP") || len(e.Code) != 13 || e.AffiliateID != 9 || e.EndDate == nil || e.EndDate.Year() != 2030 {
			t.Errorf("entry %+v", e)
		}
	}
	again := kubectlPromo(t, "", "generate", "--count", "5", "--length", "10", "--affiliate", "9", "--offer", "o", "--apply", "--set-prefix", "vip", "-n", ns)
	if again.err == nil || !strings.Contains(again.err.Error(), "never replaces an import") {
		t.Errorf("second --apply to the same prefix: %v", again.err)
	}
	if n := len(sets(t, ns)["vip-0000"].Spec.Codes); n != 50 {
		t.Errorf("the refused generate changed the set: %d codes", n)
	}
}
