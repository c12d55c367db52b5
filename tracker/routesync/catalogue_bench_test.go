package routesync

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/routing"
	"promocodes.dev/promo-operator/tracker"
)

// catalogueStream writes, to a file, the route stream a tracker receives
// while kubectl promo imports a catalogue: a snapshot of 20 offers and no
// codes, then one delta per PromoCodeSet of perSet codes (each set's entries
// share its route ref catalogue/promocodeset/offerN-NNNN), then a heartbeat.
func catalogueStream(b *testing.B, sets, perSet int) string {
	path := filepath.Join(b.TempDir(), "stream.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	snap := routing.Snapshot{Version: "v0"}
	for i := range 20 {
		snap.Offers = append(snap.Offers, routing.Offer{Ref: fmt.Sprintf("catalogue/offer%d", i), ID: int64(i + 1), Currency: "USD",
			Enabled: true, Goals: []routing.Goal{{ID: 1, Alias: "sale", Status: "approved"}}})
	}
	must(b, enc.Encode(Message{Type: routing.MessageSnapshot, Version: snap.Version, Snapshot: &snap}))
	for s := range sets {
		d := routing.Delta{Version: fmt.Sprintf("v%d", s+1), Codes: make([]routing.CodeGroup, 0, perSet)}
		ref := fmt.Sprintf("catalogue/promocodeset/offer%d-%04d", s%20, s)
		offer := fmt.Sprintf("catalogue/offer%d", s%20)
		for i := range perSet {
			c := fmt.Sprintf("C%07d", s*perSet+i)
			d.Codes = append(d.Codes, routing.CodeGroup{Folded: c, Entries: []routing.Entry{{Code: c, Ref: ref, OfferRef: offer, AffiliateID: int64(i%50_000 + 1)}}})
		}
		must(b, enc.Encode(Message{Type: routing.MessageDelta, Version: d.Version, Delta: &d}))
	}
	must(b, enc.Encode(Message{Type: routing.MessageHeartbeat}))
	must(b, w.Flush())
	must(b, f.Close())
	return path
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

var heapProfile = flag.String("catalogue.heapprofile", "", "BenchmarkCatalogueSync writes a heap profile here while the table is held")

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCatalogueSync feeds a tracker's sync client the stream of a
// catalogue import (200 sets of 5,000 codes: 1M codes) over real HTTP, with
// a snapshot file as trackers run, and reports the process CPU time and the
// heap (in use and allocated, after a GC) per code once the table holds
// every code. The stream is written to a file first and served from it, so
// encoding costs nothing here.
func BenchmarkCatalogueSync(b *testing.B) {
	const sets, perSet = 200, 5000
	n := sets * perSet
	stream := catalogueStream(b, sets, perSet)
	for b.Loop() {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open(stream)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			_, _ = io.Copy(w, f)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		routes := tracker.NewRoutes(nil)
		c := &Client{URL: srv.URL, SnapshotFile: filepath.Join(b.TempDir(), "snap.json"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu0, t0 := cpuTime(), time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = c.Run(ctx, routes); close(done) }()
		for routes.Load() == nil || routes.Load().Len() < n {
			time.Sleep(5 * time.Millisecond)
		}
		cpu, wall := cpuTime()-cpu0, time.Since(t0)
		cancel()
		<-done
		srv.Close()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if tbl := routes.Load(); tbl.Len() != n || tbl.Group("C0999999") == nil {
			b.Fatalf("table holds %d codes", tbl.Len())
		}
		if *heapProfile != "" {
			f, err := os.Create(*heapProfile)
			must(b, err)
			must(b, pprof.Lookup("heap").WriteTo(f, 0))
			must(b, f.Close())
		}
		b.ReportMetric(cpu.Seconds(), "cpu-s")
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(n), "heap-inuse-B/code")
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "heap-alloc-B/code")
		runtime.KeepAlive(routes)
	}
}
