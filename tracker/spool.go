package tracker

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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
}

const (
	spoolFile     = "spool.jsonl"
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
	s.rows, _ = countLines(filepath.Join(dir, spoolFile))
	if n, err := countLines(filepath.Join(dir, replayingFile)); err == nil {
		s.rows += n
	}
	return s, nil
}

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
		n++
	}
	return n, sc.Err()
}

// Append writes rows and fsyncs before returning: once it returns nil the
// rows survive a crash of the tracker.
func (s *Spool) Append(rows []Row) error {
	var buf []byte
	for i := range rows {
		b, err := json.Marshal(&rows[i])
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
		s.f, s.size, s.refused = f, 0, nil
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
	for sc.Scan() {
		var r Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a torn last line from a crash mid-write was never acknowledged
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
