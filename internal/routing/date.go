package routing

import "time"

// Date is an entry's start or end, to the second, in 8 bytes where a
// time.Time takes 24: at a million codes the two dates of every entry took
// 48 MB as time.Time, 16 MB as Dates. The zero Date is unbounded, as the zero
// time.Time was, and on the wire a Date is the time.Time it stands for
// (RFC 3339, UTC), so the JSON is unchanged.
//
// The API's dates (metav1.Time) are whole seconds, and so are the dates
// route servers send. A date with a fraction of a second is truncated to the
// second, as metav1.Time truncates when it is written; a date in another
// zone is the same instant, written back in UTC.
type Date struct {
	// sec counts seconds since 0001-01-01T00:00:00Z, the zero time.Time, so
	// that the zero Date is the zero time (and a date within a second of
	// it, which no API object has, is the zero Date too).
	sec int64
}

// zeroUnix is the Unix time of the zero time.Time.
const zeroUnix = -62135596800

// DateOf returns t's date: its second, truncated.
func DateOf(t time.Time) Date {
	if t.IsZero() {
		return Date{}
	}
	return Date{secondOf(t)}
}

// secondOf is t's whole second on a Date's scale. t is at or after a Date
// d exactly when secondOf(t) >= d.sec, since a Date is a whole second.
func secondOf(t time.Time) int64 { return t.Unix() - zeroUnix }

// Time returns the date as a time in UTC; the zero Date gives the zero time.
func (d Date) Time() time.Time {
	if d.IsZero() {
		return time.Time{}
	}
	return time.Unix(d.sec+zeroUnix, 0).UTC()
}

// IsZero reports whether d is unbounded (and lets omitzero leave it out).
func (d Date) IsZero() bool { return d.sec == 0 }

// String returns the date in RFC 3339, or "unbounded".
func (d Date) String() string {
	if d.IsZero() {
		return "unbounded"
	}
	return d.Time().Format(time.RFC3339)
}

// MarshalJSON writes the date as time.Time does.
func (d Date) MarshalJSON() ([]byte, error) { return d.Time().MarshalJSON() }

// UnmarshalJSON reads what time.Time reads, to the second.
func (d *Date) UnmarshalJSON(b []byte) error {
	var t time.Time
	if err := t.UnmarshalJSON(b); err != nil {
		return err
	}
	*d = DateOf(t)
	return nil
}
