package promoctl_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"promocodes.dev/promo-operator/internal/promoctl"
)

func TestParseCSVErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty file", "", "line 1: empty file: a header line code,affiliate_id"},
		{"no header", "ANNA10,42\n", `line 1, column 1: unknown column "ANNA10"`},
		{"header without affiliate_id", "code\nA1\n", `the header has no "affiliate_id" column`},
		{"unknown column", "code,affiliate_id,colour\nA1,1,red\n", `line 1, column 3: unknown column "colour"`},
		{"column twice", "code,affiliate_id,code\nA1,1,A2\n", `line 1, column 3 (code): column "code" appears twice (also column 1)`},
		{"field count", "code,affiliate_id\nA1,1,x\n", "line 2: 3 fields, the header has 2"},
		{"bare quote", "code,affiliate_id\nA\"1,1\n", "line 2, column 2: CSV syntax"},
		{"space in code", "code,affiliate_id\n A1,1\n", `line 2, column 1 (code): " A1" is not a code`},
		{"code too long", "code,affiliate_id\n" + strings.Repeat("A", 65) + ",1\n", "line 2, column 1 (code):"},
		{"negative affiliate", "code,affiliate_id\nA1,-4\n", `line 2, column 2 (affiliate_id): "-4" is not an affiliate id`},
		{"fraction of a second", "code,affiliate_id,start_date\nA1,1,2027-01-01T00:00:00.5Z\n", "line 2, column 3 (start_date): \"2027-01-01T00:00:00.5Z\" has a fraction of a second"},
		{"date without zone", "code,affiliate_id,end_date\nA1,1,2027-01-01\n", "line 2, column 3 (end_date): \"2027-01-01\" is not an RFC 3339 date"},
		{"description too long", "code,affiliate_id,description\nA1,1," + strings.Repeat("é", 1025) + "\n", "line 2, column 3 (description): the description has 1025 characters, at most 1024"},
		{"header only", "code,affiliate_id\n", "no codes"},
		{"line in a multi-line field", "code,affiliate_id,description\nA1,1,\"two\nlines\"\nA-2,1,\n", `line 4, column 1 (code): "A-2" is not a code`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := promoctl.ParseCSV("f.csv", strings.NewReader(tc.in), promoctl.ParseOptions{})
			var ve *promoctl.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
		})
	}
}

func TestParseCSVAcceptsBOMAnyColumnOrderAndCountsEveryError(t *testing.T) {
	p, err := promoctl.ParseCSV("f.csv", strings.NewReader("\ufeffAffiliate_ID,Code\n42,anna10\n43,BOB\n"), promoctl.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rows) != 2 || p.Rows[0].Code != "anna10" || p.Rows[0].Folded != "ANNA10" || p.Rows[1].AffiliateID != 43 || p.Rows[1].Line != 3 {
		t.Errorf("rows %+v", p.Rows)
	}

	var b strings.Builder
	b.WriteString("code,affiliate_id\n")
	for i := range 250 {
		fmt.Fprintf(&b, "C%d,x\n", i)
	}
	_, err = promoctl.ParseCSV("f.csv", strings.NewReader(b.String()), promoctl.ParseOptions{})
	var ve *promoctl.ValidationError
	if !errors.As(err, &ve) || ve.Total != 250 || len(ve.Errors) != promoctl.MaxReportedErrors || !strings.Contains(err.Error(), "... and 150 more") {
		t.Errorf("250 bad lines: %v", err)
	}
}

// The plan depends on the codes, not on the order of the lines; an added
// code changes one set.
func TestBuildPlanIsDeterministic(t *testing.T) {
	var lines []string
	for i := range 20000 {
		lines = append(lines, fmt.Sprintf("K%06d,%d", i, 1+i%7))
	}
	parse := func(ls []string) *promoctl.Plan {
		p, err := promoctl.ParseCSV("f", strings.NewReader("code,affiliate_id\n"+strings.Join(ls, "\n")), promoctl.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return promoctl.BuildPlan(p.Rows, "ns", "o", "o")
	}
	a := parse(lines)
	rev := make([]string, len(lines))
	for i, l := range lines {
		rev[len(lines)-1-i] = l
	}
	b := parse(rev)
	if len(a.Sets) != 32 || len(b.Sets) != len(a.Sets) {
		t.Fatalf("%d and %d sets, want 32", len(a.Sets), len(b.Sets))
	}
	for i := range a.Sets {
		if a.Sets[i].Name != b.Sets[i].Name || fmt.Sprint(a.Sets[i].Spec.Codes) != fmt.Sprint(b.Sets[i].Spec.Codes) {
			t.Errorf("set %d differs with the lines reversed", i)
		}
		if len(a.Sets[i].Spec.Codes) > 5000 {
			t.Errorf("set %s has %d codes", a.Sets[i].Name, len(a.Sets[i].Spec.Codes))
		}
	}
	c := parse(append(lines[:len(lines):len(lines)], "NEWCODE,1"))
	changed := 0
	for i := range a.Sets {
		if fmt.Sprint(a.Sets[i].Spec.Codes) != fmt.Sprint(c.Sets[i].Spec.Codes) {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("an added line changed %d sets, want 1", changed)
	}
}

// Long descriptions make sets smaller: a set stays within the stored-size budget.
func TestBuildPlanBoundsSetSize(t *testing.T) {
	var b strings.Builder
	b.WriteString("code,affiliate_id,description\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "L%05d,1,%s\n", i, strings.Repeat("d", 1000))
	}
	p, err := promoctl.ParseCSV("f", strings.NewReader(b.String()), promoctl.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plan := promoctl.BuildPlan(p.Rows, "ns", "o", "o")
	if len(plan.Sets) < 8 {
		t.Fatalf("5000 codes with 1000-character descriptions in %d sets: over 1 MiB each", len(plan.Sets))
	}
}
