package promoctl_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/promoctl"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

const smallCSV = `code,affiliate_id,start_date,end_date,description
ANNA10,42,,,
bob15,43,2027-01-01T00:00:00Z,2027-06-01T00:00:00Z,"Bob's followers, 15%"
Carl20,42,,2028-01-01T00:00:00+02:00,
`

func TestImportCreatesSetsAndReimportChangesNothing(t *testing.T) {
	ns := newNamespace(t)
	file := writeFile(t, "codes.csv", smallCSV)
	r := mustRun(t, "", "import", file, "--offer", "summer-sale", "-n", ns)
	if !strings.Contains(r.out, "promocodeset.tracking.promocodes.dev/summer-sale-0000 created") {
		t.Fatalf("stdout %q does not report the set created", r.out)
	}
	got := sets(t, ns)
	if len(got) != 1 {
		t.Fatalf("%d sets, want 1: %v", len(got), slices.Collect(maps.Keys(got)))
	}
	s := got["summer-sale-0000"]
	if s == nil {
		t.Fatalf("no set summer-sale-0000: %v", slices.Collect(maps.Keys(got)))
	}
	if s.Labels[promoctl.ImportLabel] != "summer-sale" || s.Spec.OfferRef.Name != "summer-sale" {
		t.Errorf("labels %v offerRef %v", s.Labels, s.Spec.OfferRef)
	}
	if want := map[string]int64{"ANNA10": 42, "bob15": 43, "Carl20": 42}; !maps.Equal(codesOf(got), want) {
		t.Errorf("codes %v, want %v", codesOf(got), want)
	}
	for _, e := range s.Spec.Codes {
		switch e.Code {
		case "bob15":
			if e.StartDate == nil || !e.StartDate.Time.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) ||
				e.EndDate == nil || !e.EndDate.Time.Equal(time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)) || e.Description != "Bob's followers, 15%" {
				t.Errorf("bob15 = %+v", e)
			}
		case "Carl20":
			if e.EndDate == nil || !e.EndDate.Time.Equal(time.Date(2027, 12, 31, 22, 0, 0, 0, time.UTC)) || e.StartDate != nil {
				t.Errorf("Carl20 = %+v", e)
			}
		}
	}
	if len(s.ManagedFields) == 0 || s.ManagedFields[0].Manager != promoctl.FieldManager {
		t.Errorf("managed fields %+v, want manager %s", s.ManagedFields, promoctl.FieldManager)
	}

	before := versions(got)
	r = mustRun(t, "", "import", file, "--offer", "summer-sale", "-n", ns)
	if !strings.Contains(r.out, "summer-sale-0000 unchanged") {
		t.Errorf("re-import stdout %q", r.out)
	}
	if after := versions(sets(t, ns)); !maps.Equal(before, after) {
		t.Errorf("re-import changed resourceVersions: %v -> %v", before, after)
	}
}

func TestImportRemovedLineIsRemoved(t *testing.T) {
	ns := newNamespace(t)
	mustRun(t, "", "import", writeFile(t, "a.csv", smallCSV), "--offer", "o", "--set-prefix", "batch", "-n", ns)
	without := strings.Replace(smallCSV, "ANNA10,42,,,\n", "", 1)
	r := mustRun(t, "", "import", writeFile(t, "b.csv", without), "--offer", "o", "--set-prefix", "batch", "-n", ns)
	if !strings.Contains(r.out, "batch-0000 configured") {
		t.Errorf("stdout %q", r.out)
	}
	if got, want := codesOf(sets(t, ns)), map[string]int64{"bob15": 43, "Carl20": 42}; !maps.Equal(got, want) {
		t.Errorf("codes %v, want %v", got, want)
	}
}

// A file that grows past one set splits into two, codes move between sets
// (phase 1 removes, phase 2 adds), and shrinking it deletes the set no longer needed.
func TestImportSplitsAndMerges(t *testing.T) {
	ns := newNamespace(t)
	small, big := csvOf("P", 1000), csvOf("P", 1025)
	mustRun(t, "", "import", writeFile(t, "s.csv", small), "--offer", "o", "-n", ns)
	if got := sets(t, ns); len(got) != 1 || len(codesOf(got)) != 1000 {
		t.Fatalf("1000 codes: %d sets, %d codes", len(got), len(codesOf(got)))
	}
	mustRun(t, "", "import", writeFile(t, "b.csv", big), "--offer", "o", "-n", ns)
	got := sets(t, ns)
	if len(got) != 2 || got["o-0000"] == nil || got["o-0001"] == nil {
		t.Fatalf("1025 codes: sets %v, want o-0000 and o-0001", slices.Collect(maps.Keys(got)))
	}
	total := 0
	for _, s := range got {
		total += len(s.Spec.Codes)
		if len(s.Spec.Codes) > trackingv1alpha1.MaxPromoCodeSetEntries {
			t.Errorf("%s has %d codes", s.Name, len(s.Spec.Codes))
		}
	}
	if total != 1025 || len(codesOf(got)) != 1025 {
		t.Fatalf("%d entries, %d distinct codes, want 1025", total, len(codesOf(got)))
	}
	r := mustRun(t, "", "import", writeFile(t, "s2.csv", small), "--offer", "o", "-n", ns)
	if !strings.Contains(r.out, "o-0001 deleted") {
		t.Errorf("stdout %q", r.out)
	}
	if got := sets(t, ns); len(got) != 1 || len(codesOf(got)) != 1000 {
		t.Fatalf("back to 1000 codes: %d sets, %d codes", len(got), len(codesOf(got)))
	}
}

func TestImportFromScratchWith1025CodesMakesTwoSets(t *testing.T) {
	ns := newNamespace(t)
	mustRun(t, csvOf("Q", 1025), "import", "-", "--offer", "o", "-n", ns)
	got := sets(t, ns)
	if len(got) != 2 {
		t.Fatalf("%d sets, want 2", len(got))
	}
	if n := len(codesOf(got)); n != 1025 {
		t.Fatalf("%d codes, want 1025", n)
	}
}

func TestBadCSVAppliesNothing(t *testing.T) {
	ns := newNamespace(t)
	bad := `code,affiliate_id,start_date,end_date,description
GOOD1,42,,,
BAD-1,42,,,
GOOD2,0,,,
GOOD3,42,2027-13-01T00:00:00Z,,
GOOD4,42,2027-06-01T00:00:00Z,2027-01-01T00:00:00Z,
good1,42,,,
GOOD2x,7,,,
good2X,8,,,
`
	r := kubectlPromo(t, "", "import", writeFile(t, "bad.csv", bad), "--offer", "o", "-n", ns)
	if r.err == nil {
		t.Fatalf("bad CSV accepted: %s", r.out)
	}
	var ve *promoctl.ValidationError
	if !errors.As(r.err, &ve) {
		t.Fatalf("error %T %v, want a ValidationError", r.err, r.err)
	}
	for _, want := range []string{
		`line 3, column 1 (code): "BAD-1" is not a code`,
		`line 4, column 2 (affiliate_id): "0" is not an affiliate id`,
		`line 5, column 3 (start_date): "2027-13-01T00:00:00Z" is not an RFC 3339 date`,
		`line 6, column 4 (end_date): end_date 2027-01-01T00:00:00Z must be after start_date`,
		`line 7, column 1 (code): code good1 duplicates GOOD1 on line 2`,
		`line 9, column 1 (code): code good2X is on line 8 with affiliate 7, here with affiliate 8`,
	} {
		if !strings.Contains(r.err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, r.err)
		}
	}
	if ve.Total != 6 {
		t.Errorf("%d errors, want 6:\n%v", ve.Total, r.err)
	}
	if got := sets(t, ns); len(got) != 0 {
		t.Errorf("a bad file applied %d sets", len(got))
	}
}

func TestDryRunClientPrintsSetsAndAppliesNothing(t *testing.T) {
	ns := newNamespace(t)
	r := mustRun(t, csvOf("D", 1025), "import", "-", "--offer", "o", "-n", ns, "--dry-run=client", "-o", "yaml")
	var parsed []trackingv1alpha1.PromoCodeSet
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(r.out)), 4096)
	for {
		var s trackingv1alpha1.PromoCodeSet
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the YAML: %v", err)
		}
		parsed = append(parsed, s)
	}
	if len(parsed) != 2 {
		t.Fatalf("%d documents, want 2", len(parsed))
	}
	n := 0
	for _, s := range parsed {
		if s.Kind != "PromoCodeSet" || s.APIVersion != "tracking.promocodes.dev/v1alpha1" || s.Namespace != ns ||
			s.Spec.OfferRef.Name != "o" || s.Labels[promoctl.ImportLabel] != "o" {
			t.Errorf("document %+v", s.TypeMeta)
		}
		n += len(s.Spec.Codes)
	}
	if n != 1025 {
		t.Errorf("%d codes in the YAML, want 1025", n)
	}
	if strings.Contains(r.out, "status") || strings.Contains(r.out, "creationTimestamp") {
		t.Errorf("the YAML carries status or creationTimestamp")
	}
	if got := sets(t, ns); len(got) != 0 {
		t.Errorf("--dry-run=client applied %d sets", len(got))
	}
	// And the printed YAML is what a real import creates.
	mustRun(t, csvOf("D", 1025), "import", "-", "--offer", "o", "-n", ns)
	for _, want := range parsed {
		got := sets(t, ns)[want.Name]
		if got == nil || !slices.EqualFunc(got.Spec.Codes, want.Spec.Codes, func(a, b trackingv1alpha1.PromoCodeSetEntry) bool {
			return a.Code == b.Code && a.AffiliateID == b.AffiliateID
		}) {
			t.Errorf("set %s differs from its dry run", want.Name)
		}
	}
}

func TestImportRefusesAnotherOffersSets(t *testing.T) {
	ns := newNamespace(t)
	mustRun(t, smallCSV, "import", "-", "--offer", "a", "--set-prefix", "shared", "-n", ns)
	r := kubectlPromo(t, smallCSV, "import", "-", "--offer", "b", "--set-prefix", "shared", "-n", ns)
	if r.err == nil || !strings.Contains(r.err.Error(), `is for offer "a", not "b"`) {
		t.Fatalf("err = %v", r.err)
	}
	if s := sets(t, ns)["shared-0000"]; s == nil || s.Spec.OfferRef.Name != "a" {
		t.Errorf("the refused import changed the set: %+v", s)
	}
}

// 5,000 codes with 1,024-character descriptions do not fit one object (etcd
// takes at most 1.5 MiB): the plan spreads them so every set is stored.
func TestImportLongDescriptionsFitTheObjectSizeLimit(t *testing.T) {
	ns := newNamespace(t)
	var b strings.Builder
	b.WriteString("code,affiliate_id,description\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "LONG%05d,1,%s\n", i, strings.Repeat("\"\"", 512))
	}
	mustRun(t, b.String(), "import", "-", "--offer", "o", "-n", ns)
	got := sets(t, ns)
	if n := len(codesOf(got)); n != 5000 || len(got) < 2 {
		t.Fatalf("%d codes in %d sets", n, len(got))
	}
}

// Before writing, the file's codes are checked against every code in the
// cluster: another affiliate's code, or the same affiliate's code already on
// the offer, is an error naming the line; rejected claims hold nothing.
func TestPreflightChecksTheClusterFirst(t *testing.T) {
	ctx := context.Background()
	nsA, nsB := newNamespace(t), newNamespace(t)
	held := fixtures.PromoCode(nsA, "held", "HELD1", "o", 7)
	if err := k8sClient.Create(ctx, held); err != nil {
		t.Fatal(err)
	}
	lost := fixtures.PromoCode(nsA, "lost", "LOST1", "o", 8)
	if err := k8sClient.Create(ctx, lost); err != nil {
		t.Fatal(err)
	}
	lost.Status.State = trackingv1alpha1.StateRejected
	if err := k8sClient.Status().Update(ctx, lost); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "code,affiliate_id\nINSET1,9\n", "import", "-", "--offer", "other", "--set-prefix", "theirs", "-n", nsB)

	r := kubectlPromo(t, "affiliate_id,code\n42,OK1\n42,held1\n42,inset1\n", "import", "-", "--offer", "o", "-n", nsB)
	if r.err == nil {
		t.Fatalf("codes of other affiliates imported: %s", r.out)
	}
	for _, want := range []string{
		"line 3, column 2 (code): code held1 belongs to affiliate 7 (PromoCode " + nsA + "/held)",
		"line 4, column 2 (code): code inset1 belongs to affiliate 9 (PromoCodeSet " + nsB + "/theirs-0000)",
	} {
		if !strings.Contains(r.err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, r.err)
		}
	}
	if s := sets(t, nsB); len(s) != 1 {
		t.Errorf("a refused import applied sets: %d sets", len(s))
	}
	r = kubectlPromo(t, "code,affiliate_id\nHELD1,7\n", "import", "-", "--offer", "o", "-n", nsA)
	if r.err == nil || !strings.Contains(r.err.Error(), "code HELD1 is already on offer o (PromoCode "+nsA+"/held, affiliate 7)") {
		t.Errorf("the same code twice on one offer: %v", r.err)
	}
	// The same affiliate on another offer (the reuse rule), and a code whose
	// only claim is rejected, are fine.
	mustRun(t, "code,affiliate_id\nHELD1,7\nLOST1,42\n", "import", "-", "--offer", "o2", "-n", nsA)
}

// The preflight keeps the cluster's set entries in --cache-dir and reads
// again only the sets whose resourceVersion changed: every change to a set
// (an entry removed, a code rejected in its status, the set deleted) is seen
// by the next preflight, and a damaged cache is only a slower one.
func TestPreflightCacheSeesEveryChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ns, other := newNamespace(t), newNamespace(t)
	run := func(csv string) result {
		return kubectlPromo(t, csv, "import", "-", "--offer", "o", "-n", ns, "--cache-dir", dir)
	}
	mustRun(t, "code,affiliate_id\nX1,9\nX2,9\nX3,9\n", "import", "-", "--offer", "o", "--set-prefix", "theirs", "-n", other, "--cache-dir", dir)
	refused := func(code string) bool {
		t.Helper()
		r := run("code,affiliate_id\n" + code + ",42\n")
		if r.err != nil && !strings.Contains(r.err.Error(), "code "+code+" belongs to affiliate 9") {
			t.Fatalf("import of %s: %v", code, r.err)
		}
		return r.err != nil
	}
	if !refused("X1") || !refused("X2") || !refused("X3") {
		t.Fatal("another affiliate's codes passed the preflight")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "kubectl-promo", "*", "promocodeset-claims.gob"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}

	// An entry removed: X1 is free.
	set := sets(t, other)["theirs-0000"]
	set.Spec.Codes = slices.DeleteFunc(set.Spec.Codes, func(e trackingv1alpha1.PromoCodeSetEntry) bool { return e.Code == "X1" })
	if err := k8sClient.Update(ctx, set); err != nil {
		t.Fatal(err)
	}
	if refused("X1") {
		t.Error("X1, removed from its set, still refused: the cache was not read again")
	}
	// X2 rejected in the set's status (what the controller writes): free too.
	set = sets(t, other)["theirs-0000"]
	set.Status.RejectedCodes = []trackingv1alpha1.RejectedCode{{Code: "X2", Reason: "DuplicateCode", Message: "test"}}
	if err := k8sClient.Status().Update(ctx, set); err != nil {
		t.Fatal(err)
	}
	if refused("X2") {
		t.Error("X2, rejected in its set's status, still refused")
	}
	// A damaged cache file: still right.
	if err := os.WriteFile(files[0], []byte("not a cache"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !refused("X3") {
		t.Error("X3 passed the preflight after the cache was damaged")
	}
	// The set deleted: X3 is free.
	if err := k8sClient.Delete(ctx, set); err != nil {
		t.Fatal(err)
	}
	if refused("X3") {
		t.Error("X3 still refused after its set was deleted")
	}
}

func TestDryRunServerStoresNothing(t *testing.T) {
	ns := newNamespace(t)
	r := mustRun(t, smallCSV, "import", "-", "--offer", "o", "-n", ns, "--dry-run=server")
	if !strings.Contains(r.out, "promocodeset.tracking.promocodes.dev/o-0000 created (server dry run)") {
		t.Errorf("stdout %q", r.out)
	}
	if got := sets(t, ns); len(got) != 0 {
		t.Errorf("--dry-run=server stored %d sets", len(got))
	}
	if r := kubectlPromo(t, smallCSV, "import", "-", "--offer", "o", "-n", ns, "-o", "yaml"); r.err == nil || !strings.Contains(r.err.Error(), "needs --dry-run=client") {
		t.Errorf("-o yaml without --dry-run=client: %v", r.err)
	}
}

// The progress bar (drawn when stderr is a terminal) counts the sets written.
func TestProgressCountsSets(t *testing.T) {
	ns := newNamespace(t)
	p, err := promoctl.ParseCSV("f", strings.NewReader(csvOf("PG", 1025)), promoctl.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var bar bytes.Buffer
	im := &promoctl.Importer{Client: k8sClient, Out: io.Discard, Progress: &bar, Workers: 2}
	if _, err := im.Apply(context.Background(), promoctl.BuildPlan(p.Rows, ns, "o", "o")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(bar.String(), "\rapplying sets [===============               ] 1/2") ||
		!strings.HasSuffix(bar.String(), "\rapplying sets [==============================] 2/2\n") {
		t.Errorf("progress %q", bar.String())
	}
}
