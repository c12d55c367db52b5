package tracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"promocodes.dev/promo-operator/internal/testutil/pgtest"
)

// A request still in flight when Shutdown gave up (its timeout passed) and
// the writer closed its queue must be answered, not panic with a send on a
// closed channel.
func TestSubmitAfterCloseDoesNotPanic(t *testing.T) {
	w := NewWriter(nil, 4, 4, NewMetrics(prometheus.NewRegistry()))
	w.Run(1)
	w.Close()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Submit after Close panicked: %v", r)
		}
	}()
	res := w.Submit(context.Background(), Row{})
	if !errors.Is(res.Err, ErrWriterClosed) {
		t.Fatalf("Submit after Close: %+v, want ErrWriterClosed", res)
	}
}

// clusterPIDs returns the postmaster of the cluster pool talks to and all
// its children (backends, background workers), found from a backend's pid:
// processes of that cluster only.
func clusterPIDs(t *testing.T, pool *pgxpool.Pool) []int {
	t.Helper()
	var backend int
	if err := pool.QueryRow(context.Background(), "select pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	ppid := func(pid int) int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		n, _ := strconv.Atoi(f[1])
		return n
	}
	postmaster := ppid(backend)
	if postmaster <= 1 {
		t.Fatalf("postmaster of backend %d not found", backend)
	}
	pids := []int{postmaster}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && ppid(pid) == postmaster {
			pids = append(pids, pid)
		}
	}
	return pids
}

// A PostgreSQL that hangs (every process of the test's own cluster
// SIGSTOPped) must not hold every batch for the commit timeout: once found
// unreachable, batches go straight to the spool for a moment, then one
// batch probes. Measured: rows/s acknowledged during the hang.
func TestHungPostgresGoesStraightToSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL")
	}
	t.Setenv("DATABASE_URL", "")
	own, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Stop() }()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, own.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	spool, err := OpenSpool(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = spool.Close() }()
	w := NewWriter(pool, 20000, 1000, NewMetrics(prometheus.NewRegistry())).WithSpool(spool)
	w.Run(1)
	defer w.Close()
	if res := w.Submit(ctx, Row{ID: uuid.New(), CreatedAt: time.Now(), Status: "approved", Amount: "1", Payout: "1", Revenue: "1", Currency: "USD", Source: "postback", IP: "127.0.0.1"}); res.Err != nil {
		t.Fatal(res.Err)
	}

	pids := clusterPIDs(t, pool)
	signal := func(sig syscall.Signal) {
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
	}
	signal(syscall.SIGSTOP)
	defer signal(syscall.SIGCONT)

	const clients, window = 200, 6 * time.Second
	var acked, failed atomic.Int64
	stop := time.Now().Add(window)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				res := w.Submit(ctx, Row{ID: uuid.New(), CreatedAt: time.Now(), Status: "approved", Amount: "1", Payout: "1", Revenue: "1", Currency: "USD", Source: "postback", IP: "127.0.0.1"})
				if res.Err != nil {
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	rate := float64(acked.Load()) / window.Seconds()
	t.Logf("PostgreSQL SIGSTOPped (%d processes), %d clients: %d acknowledged in %v (%.0f rows/s), %d failed, spool %d rows",
		len(pids), clients, acked.Load(), window, rate, failed.Load(), spool.Rows())
	if rate < 1000 || failed.Load() > 0 {
		t.Fatalf("a hung PostgreSQL held the writer: %.0f rows/s acknowledged, %d failed (want ≥ 1000 rows/s, 0 failed)", rate, failed.Load())
	}
	signal(syscall.SIGCONT)
}

// Only connection-level errors are "unreachable" (and spooled): a failure to
// read back which rows a committed batch inserted is not, nor is PostgreSQL
// refusing the statement.
func TestUnreachableIsConnectionLevelOnly(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connect", &pgconn.ConnectError{}, true},
		{"connection ended", fmt.Errorf("copy: %w", io.ErrUnexpectedEOF), true},
		{"network", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{"timeout", fmt.Errorf("acquire: %w", context.DeadlineExceeded), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"breaker open", errBreakerOpen, true},
		{"read-back after commit, connection broke", fmt.Errorf("%w: %w", errCommitted, io.ErrUnexpectedEOF), false},
		{"read-back after commit, refused", fmt.Errorf("%w: %w", errCommitted, &pgconn.PgError{Code: "42P01"}), false},
		{"check violation", &pgconn.PgError{Code: "23514"}, false},
		{"encoding", errors.New("encoding: bad amount"), false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("%s: unreachable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
