package promoctl_test

import (
	"context"
	"encoding/csv"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/promoctl"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

func readyOffer(t *testing.T, ns, name string, id int64, enabled, ready bool) {
	t.Helper()
	ctx := context.Background()
	o := fixtures.Offer(ns, name, id, enabled)
	if err := k8sClient.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	st := metav1.ConditionFalse
	if ready {
		st = metav1.ConditionTrue
	}
	apimeta.SetStatusCondition(&o.Status.Conditions, metav1.Condition{Type: "Ready", Status: st, Reason: "Valid", Message: "test"})
	if err := k8sClient.Status().Update(ctx, o); err != nil {
		t.Fatal(err)
	}
}

// TestExportStatesAndRoundTrip: every code with its state, and an export of
// an import imports back as the very same objects.
func TestExportStatesAndRoundTrip(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	readyOffer(t, ns, "live", 9101, true, true)
	readyOffer(t, ns, "off", 9102, false, true)
	pc := fixtures.PromoCode(ns, "single", "SOLO1", "live", 42)
	if err := k8sClient.Create(ctx, pc); err != nil {
		t.Fatal(err)
	}
	pc.Status.State = trackingv1alpha1.StateRejected
	if err := k8sClient.Status().Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	file := `code,affiliate_id,start_date,end_date,description
ACT1,42,,,"plain, ""quoted"""
SCHED1,42,2099-01-01T00:00:00Z,,
EXP1,42,2019-01-01T00:00:00Z,2020-01-01T00:00:00Z,old
REJ1,43,,,
`
	mustRun(t, file, "import", "-", "--offer", "live", "-n", ns)
	mustRun(t, "code,affiliate_id\nSLEEP1,44\n", "import", "-", "--offer", "off", "-n", ns)
	set := sets(t, ns)["live-0000"]
	set.Status.RejectedCodes = []trackingv1alpha1.RejectedCode{{Code: "REJ1", Reason: "CodeOwnedByAnotherAffiliate", Message: "held by x/y (affiliate 1)"}}
	if err := k8sClient.Status().Update(ctx, set); err != nil {
		t.Fatal(err)
	}

	r := mustRun(t, "", "export", "-n", ns)
	rows, err := csv.NewReader(strings.NewReader(r.out)).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v\n%s", err, r.out)
	}
	if !slices.Equal(rows[0], promoctl.ExportHeader) {
		t.Fatalf("header %v", rows[0])
	}
	state := map[string]string{}
	for _, row := range rows[1:] {
		state[row[0]] = row[6] + " " + row[7] + " " + row[8]
	}
	want := map[string]string{
		"SOLO1":  "Rejected PromoCode " + ns + "/single",
		"ACT1":   "Active PromoCodeSet " + ns + "/live-0000",
		"SCHED1": "Scheduled PromoCodeSet " + ns + "/live-0000",
		"EXP1":   "Expired PromoCodeSet " + ns + "/live-0000",
		"REJ1":   "Rejected PromoCodeSet " + ns + "/live-0000",
		"SLEEP1": "Inactive PromoCodeSet " + ns + "/off-0000",
	}
	if !maps.Equal(state, want) {
		t.Errorf("states\n%v\nwant\n%v", state, want)
	}
	if !strings.Contains(r.out, `ACT1,42,,,"plain, ""quoted""",live,Active`) ||
		!strings.Contains(r.out, "EXP1,42,2019-01-01T00:00:00Z,2020-01-01T00:00:00Z,old,live,Expired") {
		t.Errorf("export rows:\n%s", r.out)
	}

	// Round trip: the export of offer live imports back without a change.
	before := versions(sets(t, ns))
	exported := mustRun(t, "", "export", "-n", ns, "--offer", "live").out
	if strings.Contains(exported, "SLEEP1") {
		t.Errorf("--offer live exported a code of offer off")
	}
	back := mustRun(t, exported, "import", "-", "--offer", "live", "-n", ns)
	if !strings.Contains(back.errOut, "skipped 1 line(s) of kind PromoCode") || !strings.Contains(back.out, "live-0000 unchanged") {
		t.Errorf("re-import of the export: stdout %q stderr %q", back.out, back.errOut)
	}
	if after := versions(sets(t, ns)); !maps.Equal(before, after) {
		t.Errorf("importing the export changed objects: %v -> %v", before, after)
	}
	// Importing it for another offer is refused line by line.
	wrong := kubectlPromo(t, exported, "import", "-", "--offer", "off", "-n", ns)
	if wrong.err == nil || !regexp.MustCompile(`line \d+, column 6 \(offer\): the line is of offer "live"`).MatchString(wrong.err.Error()) {
		t.Errorf("import of offer live's export as --offer off: %v", wrong.err)
	}
}
