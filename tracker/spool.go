package tracker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
)

// ErrSpoolFull is returned when the spool has reached its size bound.
var ErrSpoolFull = errors.New("spool full")

// Spool is a local append-only, fsynced file of conversions accepted while
// PostgreSQL was unreachable. Rows keep the ids they were acknowledged with;
// Replay inserts them idempotently (ON CONFLICT DO NOTHING) once PostgreSQL
// is back, oldest first.
type Spool struct {
	dir      string
	maxBytes int64

	mu   sync.Mutex
	f    *os.File
	size int64
	rows int
	// refused is why the last Append failed (ErrSpoolFull, a write or sync
	// error), nil after a success or once a replay emptied the file.
	refused error
	// headed: the spool file has the version line (files written before
	// there was one get it before the first row this version appends).
	headed bool
}

// The spool file format: a version line, then one JSON object a line with
// the explicit field names of spoolRow. Readers ignore fields they do not
// know and leave absent ones zero, so a field can be added without a new
// version; a file with a newer version line is not replayed (Replay fails
// and keeps it) rather than misread. Lines before any version line are the
// format before there was one (Row's Go field names), still read.
const (
	spoolVersion     = 2
	spoolHeader      = `{"promo_spool_version":2}`
	spoolHeaderStart = `{"promo_spool_version":`
)

// spoolRow is Row as spooled, with explicit field names.
type spoolRow struct {
	ID           uuid.UUID `json:"id"`
	CreatedAt    time.Time `json:"created_at"`
	PromoCode    string    `json:"promo_code"`
	PromoCodeRef string    `json:"promo_code_ref"`
	OfferID      int64     `json:"offer_id"`
	AffiliateID  int64     `json:"affiliate_id"`
	GoalID       int64     `json:"goal_id"`
	Status       string    `json:"status"`
	Amount       string    `json:"amount"`
	Payout       string    `json:"payout"`
	Revenue      string    `json:"revenue"`
	Currency     string    `json:"currency"`
	AdvOrderID   string    `json:"adv_order_id,omitempty"`
	AdvParam1    string    `json:"adv_param1,omitempty"`
	AdvParam2    string    `json:"adv_param2,omitempty"`
	AdvParam3    string    `json:"adv_param3,omitempty"`
	AdvParam4    string    `json:"adv_param4,omitempty"`
	AdvParam5    string    `json:"adv_param5,omitempty"`
	Source       string    `json:"source"`
	IP           string    `json:"ip"`
	UserAgent    string    `json:"user_agent"`
	// ExplicitStatus (added without a new version: older readers ignore
	// it and replay such a row's duplicate as a duplicate, as they did).
	ExplicitStatus bool `json:"explicit_status,omitempty"`
}

func toSpoolRow(r *Row) spoolRow {
	return spoolRow{ID: r.ID, CreatedAt: r.CreatedAt, PromoCode: r.PromoCode, PromoCodeRef: r.PromoCodeRef,
		OfferID: r.OfferID, AffiliateID: r.AffiliateID, GoalID: r.GoalID, Status: r.Status,
		Amount: r.Amount, Payout: r.Payout, Revenue: r.Revenue, Currency: r.Currency, AdvOrderID: r.AdvOrderID,
		AdvParam1: r.AdvParams[0], AdvParam2: r.AdvParams[1], AdvParam3: r.AdvParams[2], AdvParam4: r.AdvParams[3], AdvParam5: r.AdvParams[4],
		Source: r.Source, IP: r.IP, UserAgent: r.UserAgent, ExplicitStatus: r.ExplicitStatus}
}

func (s *spoolRow) row() Row {
	return Row{ID: s.ID, CreatedAt: s.CreatedAt, PromoCode: s.PromoCode, PromoCodeRef: s.PromoCodeRef,
		OfferID: s.OfferID, AffiliateID: s.AffiliateID, GoalID: s.GoalID, Status: s.Status,
		Amount: s.Amount, Payout: s.Payout, Revenue: s.Revenue, Currency: s.Currency, AdvOrderID: s.AdvOrderID,
		AdvParams: [5]string{s.AdvParam1, s.AdvParam2, s.AdvParam3, s.AdvParam4, s.AdvParam5},
		Source:    s.Source, IP: s.IP, UserAgent: s.UserAgent, ExplicitStatus: s.ExplicitStatus}
}

func isHeader(line []byte) bool { return bytes.HasPrefix(line, []byte(spoolHeaderStart)) }

// ErrSpoolVersion is returned by Replay for a spool written by a newer
// tracker: the file is kept.
var ErrSpoolVersion = errors.New("spool written by a newer version")

const (
	spoolFile     = "spool.jsonl" // the name of the format before it had a version line, kept
	replayingFile = "spool.replaying.jsonl"
)

// OpenSpool opens (creating) the spool in dir, bounded to maxBytes.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, spoolFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, f: f, size: st.Size()}
	s.headed = s.size > 0 && firstLineIsHeader(filepath.Join(dir, spoolFile))
	s.rows, _ = countLines(filepath.Join(dir, spoolFile))
	if n, err := countLines(filepath.Join(dir, replayingFile)); err == nil {
		s.rows += n
	}
	return s, nil
}

func firstLineIsHeader(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	line, _ := bufio.NewReader(f).ReadBytes('\n')
	return isHeader(line)
}

// countLines counts the rows in path: its lines but version lines.
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		if !isHeader(sc.Bytes()) {
			n++
		}
	}
	return n, sc.Err()
}

// Append writes rows and fsyncs before returning: once it returns nil the
// rows survive a crash of the tracker.
func (s *Spool) Append(rows []Row) error {
	var buf []byte
	for i := range rows {
		sr := toSpoolRow(&rows[i])
		b, err := json.Marshal(&sr)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.headed {
		buf = append([]byte(spoolHeader+"\n"), buf...)
	}
	if s.size+int64(len(buf)) > s.maxBytes {
		s.refused = ErrSpoolFull
		return ErrSpoolFull
	}
	if _, err := s.f.Write(buf); err != nil {
		s.refused = fmt.Errorf("writing the spool: %w", err)
		return s.refused
	}
	if err := s.f.Sync(); err != nil {
		s.refused = fmt.Errorf("syncing the spool: %w", err)
		return s.refused
	}
	s.size += int64(len(buf))
	s.rows += len(rows)
	s.refused = nil
	s.headed = true
	return nil
}

// Accepting returns nil while the spool can take rows: nothing refused
// since the last success or the last replay, and room left. A refusal
// sticks until then — a batch that did not fit says the spool is full even
// if a smaller one would.
func (s *Spool) Accepting() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused != nil {
		return s.refused
	}
	if s.size >= s.maxBytes {
		return ErrSpoolFull
	}
	return nil
}

// Rows returns how many rows wait for replay.
func (s *Spool) Rows() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows
}

// Replay hands the spooled rows, oldest first, to insert in batches; rows
// are removed only after insert succeeded for all of them. A crash during
// replay replays again: insert must be idempotent.
func (s *Spool) Replay(batch int, insert func([]Row) error) (int, error) {
	s.mu.Lock()
	replaying := filepath.Join(s.dir, replayingFile)
	if _, err := os.Stat(replaying); errors.Is(err, fs.ErrNotExist) {
		if s.size == 0 {
			s.mu.Unlock()
			return 0, nil
		}
		// Move the spool aside; new rows go to a fresh file.
		if err := s.f.Close(); err != nil {
			s.mu.Unlock()
			return 0, err
		}
		if err := os.Rename(filepath.Join(s.dir, spoolFile), replaying); err != nil {
			s.mu.Unlock()
			return 0, err
		}
		f, err := os.OpenFile(filepath.Join(s.dir, spoolFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			s.mu.Unlock()
			return 0, err
		}
		s.f, s.size, s.refused, s.headed = f, 0, nil, false
	}
	s.mu.Unlock()

	f, err := os.Open(replaying)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var rows []Row
	done := 0
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		if err := insert(rows); err != nil {
			return err
		}
		done += len(rows)
		rows = rows[:0]
		return nil
	}
	version := 1 // lines before a version line: the format before there was one
	for sc.Scan() {
		line := sc.Bytes()
		if isHeader(line) {
			var h struct {
				V int `json:"promo_spool_version"`
			}
			if err := json.Unmarshal(line, &h); err != nil || h.V > spoolVersion {
				return done, fmt.Errorf("%w: %s", ErrSpoolVersion, line)
			}
			version = h.V
			continue
		}
		var r Row
		if version == 1 {
			if err := json.Unmarshal(line, &r); err != nil {
				continue // a torn last line from a crash mid-write was never acknowledged
			}
		} else {
			var sr spoolRow
			if err := json.Unmarshal(line, &sr); err != nil {
				continue // a torn last line from a crash mid-write was never acknowledged
			}
			r = sr.row()
		}
		rows = append(rows, r)
		if len(rows) >= batch {
			if err := flush(); err != nil {
				return done, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return done, err
	}
	if err := flush(); err != nil {
		return done, err
	}
	if err := os.Remove(replaying); err != nil {
		return done, err
	}
	s.mu.Lock()
	s.rows -= done
	if s.rows < 0 {
		s.rows = 0
	}
	s.mu.Unlock()
	return done, nil
}

// Close closes the spool file.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
