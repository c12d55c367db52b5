package promoctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"promocodes.dev/promo-operator/internal/promoctl"
)

// BenchmarkImport measures `kubectl promo import` of $PROMO_BENCH_CODES codes
// (default 1,000,000) against the envtest API server: validation, planning,
// the first apply, the re-import that changes nothing, and export. Run it with
//
//	go test -run '^$' -bench BenchmarkImport -benchtime 1x ./internal/promoctl
//
// The set controller need not run (a bare API server and etcd).
func BenchmarkImport(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("PROMO_BENCH_CODES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	var buf bytes.Buffer
	buf.WriteString("code,affiliate_id,start_date,end_date,description\n")
	for i := range n {
		fmt.Fprintf(&buf, "BENCH%08d,%d,2027-01-01T00:00:00Z,2028-01-01T00:00:00Z,\n", i, 1+i%1000)
	}
	file := buf.Bytes()
	b.ReportMetric(float64(len(file))/(1<<20), "csv-MiB")
	ctx := context.Background()
	for b.Loop() {
		ns := newNamespace(b)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)

		start := time.Now()
		parsed, err := promoctl.ParseCSV("bench.csv", bytes.NewReader(file), promoctl.ParseOptions{Offer: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		validated := time.Since(start)
		plan := promoctl.BuildPlan(parsed.Rows, ns, "bench", "bench")
		planned := time.Since(start) - validated
		var after runtime.MemStats
		runtime.ReadMemStats(&after)

		im := &promoctl.Importer{Client: k8sClient, Out: io.Discard, Workers: 4}
		start = time.Now()
		res, err := im.Apply(ctx, plan)
		if err != nil {
			b.Fatal(err)
		}
		applied := time.Since(start)
		if res.Created != len(plan.Sets) {
			b.Fatalf("created %d of %d sets", res.Created, len(plan.Sets))
		}

		start = time.Now()
		parsed2, err := promoctl.ParseCSV("bench.csv", bytes.NewReader(file), promoctl.ParseOptions{Offer: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		res2, err := im.Apply(ctx, promoctl.BuildPlan(parsed2.Rows, ns, "bench", "bench"))
		if err != nil {
			b.Fatal(err)
		}
		reimported := time.Since(start)
		if res2.Unchanged != len(plan.Sets) {
			b.Fatalf("re-import: %s", res2)
		}

		start = time.Now()
		codes, err := (&promoctl.Exporter{Client: k8sClient, Namespace: ns, Offer: "bench"}).Export(ctx, io.Discard)
		if err != nil || codes != n {
			b.Fatalf("export: %d codes, %v", codes, err)
		}
		exported := time.Since(start)

		// The stored size of the biggest set, managed fields included (etcd's limit is 1.5 MiB).
		biggest, entries := 0, 0
		for _, s := range sets(b, ns) {
			j, err := json.Marshal(s)
			if err != nil {
				b.Fatal(err)
			}
			if len(j) > biggest {
				biggest, entries = len(j), len(s.Spec.Codes)
			}
		}
		b.ReportMetric(float64(biggest)/1024, "biggest-set-KiB")

		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		b.ReportMetric(float64(len(plan.Sets)), "sets")
		b.ReportMetric(validated.Seconds(), "validate-s")
		b.ReportMetric(planned.Seconds(), "plan-s")
		b.ReportMetric(applied.Seconds(), "apply-s")
		b.ReportMetric(reimported.Seconds(), "reimport-s")
		b.ReportMetric(exported.Seconds(), "export-s")
		b.ReportMetric(float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/(1<<20), "parsed-heap-MiB")
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB")
		b.Logf("%d codes: %d sets (biggest stored: %d KiB, %d entries); validate %s, plan %s, apply %s, re-import %s, export %s; heap after parse+plan +%d MiB, max RSS %d MiB",
			n, len(plan.Sets), biggest>>10, entries, validated, planned, applied, reimported, exported, (after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))>>20, ru.Maxrss>>10)
	}
}
