package tracker

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func spoolTestRows() []Row {
	at := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	return []Row{
		{ID: uuid.New(), CreatedAt: at, PromoCode: "PROMO22", PromoCodeRef: "shop/p", OfferID: 7, AffiliateID: 42, GoalID: 1,
			Status: "approved", Amount: "10.50", Payout: "1.05", Revenue: "8.00", Currency: "USD", AdvOrderID: "o-1",
			AdvParams: [5]string{"a", "", "c", "", "e"}, Source: "postback", IP: "127.0.0.1", UserAgent: "ua ☃", ExplicitStatus: true},
		{ID: uuid.New(), CreatedAt: at.Add(time.Second), PromoCode: "PROMO22", OfferID: 8, GoalID: 2,
			Status: "pending", Amount: "", Payout: "1.50", Revenue: "2.00", Currency: "EUR", Source: "img"},
	}
}

func replayAll(t *testing.T, s *Spool) []Row {
	t.Helper()
	var got []Row
	if _, err := s.Replay(10, func(r []Row) error { got = append(got, r...); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// A spool written by this version starts with a version line and names its
// fields; it still replays when a later version added a field (an unknown
// key on its lines), and a spool in the format before the version line
// (Row's Go field names, no version line) replays too.
func TestSpoolFormatVersionedAndCompatible(t *testing.T) {
	want := spoolTestRows()
	dir := t.TempDir()
	s, err := OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	path := filepath.Join(dir, spoolFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != spoolHeader || !strings.Contains(lines[1], `"adv_order_id":"o-1"`) || !strings.Contains(lines[1], `"created_at":`) {
		t.Fatalf("spool file:\n%s", b)
	}
	// explicit_status is written when set, absent otherwise (and absent on
	// lines of trackers before it: they replay as false).
	if !strings.Contains(lines[1], `"explicit_status":true`) || strings.Contains(lines[2], `explicit_status`) {
		t.Fatalf("explicit_status in the spool file:\n%s", b)
	}
	// A field added by a later version of the same format.
	for i := 1; i < len(lines); i++ {
		lines[i] = strings.Replace(lines[i], "{", `{"added_later":"x",`, 1)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ = OpenSpool(dir, 1<<20)
	if s.Rows() != 2 {
		t.Fatalf("rows counted: %d, want 2 (the version line is no row)", s.Rows())
	}
	if got := replayAll(t, s); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("replayed %+v\nwant %+v", got, want)
	}
	_ = s.Close()

	// A file from before the version line, then rows this version appends to it.
	legacy := ""
	for i := range want {
		b, _ := json.Marshal(&want[i]) // the format before: Row, Go field names
		legacy += string(b) + "\n"
	}
	if err := os.WriteFile(path, []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ = OpenSpool(dir, 1<<20)
	more := spoolTestRows()
	if err := s.Append(more[:1]); err != nil {
		t.Fatal(err)
	}
	if s.Rows() != 3 {
		t.Fatalf("rows counted: %d, want 3", s.Rows())
	}
	if got := replayAll(t, s); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != more[0] {
		t.Fatalf("replayed %+v", got)
	}

	// A spool from a newer, incompatible version is kept, not misread.
	_ = os.WriteFile(filepath.Join(dir, replayingFile), []byte(`{"promo_spool_version":3}`+"\n{}\n"), 0o600)
	if _, err := s.Replay(10, func([]Row) error { return nil }); !errors.Is(err, ErrSpoolVersion) {
		t.Fatalf("newer version: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, replayingFile)); err != nil {
		t.Fatalf("newer version's file not kept: %v", err)
	}
	_ = s.Close()
}

// A replay interrupted after a batch was inserted replays that batch again
// (insert is idempotent: ON CONFLICT DO NOTHING): the spool hands every row
// over twice, and removes nothing until all were inserted.
func TestSpoolReplayAfterPartialFailureReplaysAgain(t *testing.T) {
	want := spoolTestRows()
	s, err := OpenSpool(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := s.Append(want); err != nil {
		t.Fatal(err)
	}
	var first []Row
	calls := 0
	n, err := s.Replay(1, func(r []Row) error {
		calls++
		if calls == 2 {
			return errors.New("connection lost")
		}
		first = append(first, r...)
		return nil
	})
	if err == nil || n != 1 || len(first) != 1 || first[0] != want[0] || s.Rows() != 2 {
		t.Fatalf("interrupted replay: n=%d err=%v delivered=%d rows=%d", n, err, len(first), s.Rows())
	}
	got := replayAll(t, s)
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("second replay: %+v", got)
	}
	if s.Rows() != 0 {
		t.Fatalf("rows after the second replay: %d", s.Rows())
	}
}
