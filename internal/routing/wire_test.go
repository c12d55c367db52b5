package routing

import (
	"encoding/json"
	"testing"
)

// wireSnapshot is a snapshot as route servers and snapshot files carry it:
// dates RFC 3339 in UTC, whole seconds, left out when unbounded; a code
// written other than its folded form; a group of two entries.
const wireSnapshot = `{"version":"v7","offers":[{"ref":"shop/summer","id":7,"currency":"USD","enabled":true,` +
	`"goals":[{"id":1,"alias":"sale","status":"approved","payout":{"value":"0"},"revenue":{"value":"0"}}],"defaultGoal":0}],` +
	`"codes":[{"folded":"NEWYEAR27","entries":[{"code":"NewYear27","ref":"shop/ny","offerRef":"shop/summer","affiliateID":42,` +
	`"start":"2026-06-01T00:00:00Z","end":"2026-06-03T00:00:00Z"}]},` +
	`{"folded":"PROMO22","entries":[{"code":"PROMO22","ref":"shop/promocodeset/s","offerRef":"shop/summer","affiliateID":1,"end":"2026-06-01T00:00:01Z"},` +
	`{"code":"promo22","ref":"shop/p","offerRef":"shop/winter","affiliateID":2}]}]}`

// TestWireFormat: a table decoded from the wire encodes to the same bytes,
// through Snapshot and WriteSnapshot, and a delta's group comes back as sent.
// Trackers of other versions and the snapshot file on disk read this format.
func TestWireFormat(t *testing.T) {
	var s Snapshot
	if err := json.Unmarshal([]byte(wireSnapshot), &s); err != nil {
		t.Fatal(err)
	}
	tbl := NewTable(s)
	if b, err := json.Marshal(tbl.Snapshot()); err != nil || string(b) != wireSnapshot {
		t.Fatalf("snapshot re-encoded (%v):\n%s\nwant\n%s", err, b, wireSnapshot)
	}
	if b, _ := json.Marshal(NewTable(streamed(t, tbl)).Snapshot()); string(b) != wireSnapshot {
		t.Fatalf("streamed snapshot re-encoded:\n%s", b)
	}

	const group = `{"folded":"SPRING1","entries":[{"code":"Spring1","ref":"shop/promocodeset/spring","offerRef":"shop/summer","affiliateID":9,"start":"2026-03-20T12:30:45Z"}]}`
	var d Delta
	if err := json.Unmarshal([]byte(`{"version":"v8","codes":[`+group+`,{"folded":"PROMO22"}]}`), &d); err != nil {
		t.Fatal(err)
	}
	after := tbl.Apply(d)
	if b, _ := json.Marshal(CodeGroup{Folded: "SPRING1", Entries: after.Group("SPRING1")}); string(b) != group {
		t.Fatalf("delta group re-encoded:\n%s\nwant\n%s", b, group)
	}
	if after.Group("PROMO22") != nil || after.Len() != 2 {
		t.Fatalf("delta applied: PROMO22 %v, %d codes", after.Group("PROMO22"), after.Len())
	}
}
