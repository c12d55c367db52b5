package tracker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"promocodes.dev/promo-operator/internal/routing"
)

// Routes holds the routing table being served. Readers load it without
// locks; an update swaps in a new immutable table.
type Routes struct {
	table   atomic.Pointer[routing.Table]
	metrics *Metrics
}

// NewRoutes returns an empty holder; m may be nil.
func NewRoutes(m *Metrics) *Routes { return &Routes{metrics: m} }

// Load returns the current table, nil before the first one.
func (r *Routes) Load() *routing.Table { return r.table.Load() }

// Store swaps in t.
func (r *Routes) Store(t *routing.Table) {
	old := r.table.Swap(t)
	if r.metrics == nil {
		return
	}
	if old != nil {
		r.metrics.TableVersion.DeleteLabelValues(old.Version())
	}
	r.metrics.TableVersion.WithLabelValues(t.Version()).Set(1)
	r.metrics.TableCodes.Set(float64(t.Len()))
	r.metrics.TableOffers.Set(float64(t.Offers()))
}

// LoadSnapshot reads a table saved by SaveSnapshot.
func LoadSnapshot(path string) (*routing.Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s routing.Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding snapshot %s: %w", path, err)
	}
	return routing.NewTable(s), nil
}

// SaveSnapshot writes t to path atomically: a temporary file, fsynced, then
// renamed over path, so a crash leaves the old or the new snapshot, whole.
// The table is encoded straight into the file (routing.Table.WriteSnapshot).
func SaveSnapshot(path string, t *routing.Table) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	w := bufio.NewWriterSize(f, 256<<10)
	if err := t.WriteSnapshot(w); err != nil {
		_ = f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
