package pgrole

import (
	"slices"
	"testing"
)

func TestReadOnlySQL(t *testing.T) {
	got := ReadOnlySQL("-- comment\nCREATE ROLE :\"role\" LOGIN PASSWORD :'password';\n\nGRANT USAGE ON SCHEMA public TO :\"role\";\n", "promo_portal", "pa'ss")
	want := []string{`CREATE ROLE "promo_portal" LOGIN PASSWORD 'pa''ss'`, `GRANT USAGE ON SCHEMA public TO "promo_portal"`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
