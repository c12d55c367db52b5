package routing

import (
	"strings"
	"testing"
)

func TestValidCodeAndFold(t *testing.T) {
	for _, tc := range []struct {
		in     string
		valid  bool
		folded string
	}{
		{"PROMO22", true, "PROMO22"},
		{"promo22", true, "PROMO22"},
		{"PrOmO22", true, "PROMO22"},
		{"0", true, "0"},
		{strings.Repeat("a", 64), true, strings.Repeat("A", 64)},
		{strings.Repeat("a", 65), false, ""},
		{"", false, ""},
		{"PROMO-22", false, ""},
		{"PROMO 22", false, ""},
		{"промо", false, ""},
		{"PROMO22\x00", false, ""},
		{"ÄBC", false, ""},
	} {
		if got := ValidCode(tc.in); got != tc.valid {
			t.Errorf("ValidCode(%q) = %v, want %v", tc.in, got, tc.valid)
		}
		var buf [MaxCodeLen]byte
		n, ok := foldInto(&buf, tc.in)
		if ok != tc.valid {
			t.Errorf("foldInto(%q) ok = %v, want %v", tc.in, ok, tc.valid)
		}
		if tc.valid {
			if got := Fold(tc.in); got != tc.folded {
				t.Errorf("Fold(%q) = %q, want %q", tc.in, got, tc.folded)
			}
			if got := string(buf[:n]); got != tc.folded {
				t.Errorf("foldInto(%q) = %q, want %q", tc.in, got, tc.folded)
			}
		}
	}
}

// FuzzFold checks that validation and both folds agree for any input, and that
// folding is idempotent and only changes ASCII lower-case letters.
func FuzzFold(f *testing.F) {
	for _, s := range []string{"PROMO22", "promo22", "", "PROMO-22", "промо", strings.Repeat("z", 65), "a\xffb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf [MaxCodeLen]byte
		n, ok := foldInto(&buf, s)
		if ok != ValidCode(s) {
			t.Fatalf("foldInto and ValidCode disagree on %q", s)
		}
		folded := Fold(s)
		if len(folded) != len(s) {
			t.Fatalf("Fold changed length of %q", s)
		}
		if Fold(folded) != folded {
			t.Fatalf("Fold not idempotent on %q", s)
		}
		if ok && string(buf[:n]) != folded {
			t.Fatalf("foldInto(%q) = %q, Fold = %q", s, buf[:n], folded)
		}
		if strings.EqualFold(s, folded) != true && ValidCode(s) {
			t.Fatalf("Fold(%q) = %q is not case-equal", s, folded)
		}
	})
}
