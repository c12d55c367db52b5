package routing

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

func TestDateConversions(t *testing.T) {
	if d := DateOf(time.Time{}); !d.IsZero() || !d.Time().IsZero() || d != (Date{}) {
		t.Fatalf("the zero time is the zero Date and back: %v", d)
	}
	for _, tc := range []struct {
		in   time.Time
		want time.Time
	}{
		{t0, t0},
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}, // Unix 0 is a date, not unbounded
		{time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{t0.Add(999 * time.Millisecond), t0},        // truncated, as metav1.Time is written
		{t0.In(time.FixedZone("CEST", 2*3600)), t0}, // the same instant, in UTC
		{time.Date(1969, 12, 31, 23, 59, 59, 5e8, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)}, // before 1970 too
	} {
		d := DateOf(tc.in)
		if got := d.Time(); got != tc.want || d.IsZero() {
			t.Errorf("DateOf(%v).Time() = %v (zero %v), want %v", tc.in, got, d.IsZero(), tc.want)
		}
	}
}

func TestDateJSON(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{`"2026-06-01T00:00:00Z"`, `"2026-06-01T00:00:00Z"`},
		{`"2026-06-01T02:00:00+02:00"`, `"2026-06-01T00:00:00Z"`},
		{`"2026-06-01T00:00:00.75Z"`, `"2026-06-01T00:00:00Z"`},
		{`"1970-01-01T00:00:00Z"`, `"1970-01-01T00:00:00Z"`},
	} {
		var d Date
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if b, err := json.Marshal(d); err != nil || string(b) != tc.out {
			t.Errorf("%s re-encoded as %s (%v), want %s", tc.in, b, err, tc.out)
		}
	}
	var d Date
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || !d.IsZero() {
		t.Errorf("null: %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`"June 1st"`), &d); err == nil {
		t.Error("a date that is not RFC 3339 is an error, as for time.Time")
	}
	b, _ := json.Marshal(Entry{Code: "A", Ref: "ns/a", OfferRef: "ns/o", AffiliateID: 1})
	if string(b) != `{"code":"A","ref":"ns/a","offerRef":"ns/o","affiliateID":1}` {
		t.Errorf("unbounded dates are left out: %s", b)
	}
}

// TestActiveAt: an entry is active from its start, inclusive, to its end,
// exclusive, at any instant (queries carry nanoseconds), as time.Time
// comparisons of the whole-second dates say.
func TestActiveAt(t *testing.T) {
	start, end := t0, t0.Add(48*time.Hour)
	e := Entry{Start: DateOf(start), End: DateOf(end)}
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{start.Add(-time.Nanosecond), false},
		{start, true},
		{end.Add(-time.Nanosecond), true},
		{end, false},
		{end.Add(time.Nanosecond), false},
		{start.In(time.FixedZone("PDT", -7*3600)), true},
	} {
		if got := e.ActiveAt(tc.at); got != tc.want {
			t.Errorf("ActiveAt(%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	unbounded := Entry{}
	for _, at := range []time.Time{{}, time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), t0, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if !unbounded.ActiveAt(at) {
			t.Errorf("unbounded entry inactive at %v", at)
		}
	}
	if (&Entry{End: DateOf(end)}).ActiveAt(end) || !(&Entry{Start: DateOf(start)}).ActiveAt(end) {
		t.Error("one-sided bounds")
	}

	rng := rand.New(rand.NewPCG(3, 4))
	for range 10_000 {
		s := t0.Add(time.Duration(rng.IntN(100)-50) * time.Second)
		en := s.Add(time.Duration(rng.IntN(50)) * time.Second)
		at := t0.Add(time.Duration(rng.Int64N(int64(200*time.Second))) - 100*time.Second)
		want := !at.Before(s) && at.Before(en)
		if got := (&Entry{Start: DateOf(s), End: DateOf(en)}).ActiveAt(at); got != want {
			t.Fatalf("[%v, %v) at %v: %v, want %v", s, en, at, got, want)
		}
	}
}
