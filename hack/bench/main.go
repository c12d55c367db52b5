// Command bench measures promo-operator on this machine against baselines
// measured in the same run, and writes docs/benchmarks.md with PNG charts
// (`make bench`). Sub-commands serve the baselines in their own processes.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve-ceiling":
			must(serveCeiling(os.Args[2]))
			return
		case "serve-naive":
			must(serveNaive(os.Args[2], os.Args[3]))
			return
		}
	}
	root := flag.String("root", "../..", "repository root")
	step := flag.Duration("step", 5*time.Second, "duration of each fixed-load step")
	loads := flag.String("loads", "2000,5000,10000,20000", "offered loads (req/s) for the latency table")
	codes := flag.Int("codes", 100_000, "codes in the tracker's table")
	catalogueCodes := flag.Int("catalogue", 1_000_000, "codes of the kubectl promo import run, in sets of 5,000 over 20 offers (0: skip)")
	propagation := flag.Bool("propagation", true, "measure kubectl apply -> servable through the whole stack")
	scaleList := flag.String("scales", "1000,100000", "existing PromoCodes for the propagation runs")
	out := flag.String("out", "docs/benchmarks.md", "report path, relative to root (or absolute)")
	lookup := flag.Bool("lookup", true, "run the routing table's Go benchmarks")
	tracker := flag.Bool("tracker", true, "run the tracker end to end against its baselines")
	flag.BoolVar(&onlyTracker, "only-tracker", false, "skip the ceiling and naive baselines (experiments; the report then lacks them)")
	flag.IntVar(&conns, "conns", conns, "keep-alive connections of the fixed-load steps")
	satConns := flag.String("saturation-conns", "256,1024", "connection counts of the maximum-throughput steps (100k req/s offered); each server's maximum is its best")
	sweep := flag.String("sweep-conns", "16,64,256,512", "connection counts tried at -sweep-rate for the ceiling and the tracker (empty: skip)")
	flag.IntVar(&sweepRate, "sweep-rate", sweepRate, "offered req/s of the connection sweep")
	flag.IntVar(&webhookRate, "webhook-rate", webhookRate, "shop webhook deliveries per second offered to the tracker, beside postbacks at the same rate (0: skip)")
	flag.IntVar(&webhookConns, "webhook-conns", webhookConns, "keep-alive connections of the webhook step")
	flag.IntVar(&compareWriters, "compare-writers", 4, "also run the tracker with --writers=N, for comparison with the default (0: skip)")
	statusList := flag.String("status-rates", "250,500,1000", "offered status changes/s of the status-change steps (empty: skip)")
	flag.StringVar(&beforeRef, "before-ref", "", "also run the tracker built from this git ref (e.g. main) on its own database, before the tracker under test")
	flag.StringVar(&trackerArgs, "tracker-args", "", "extra flags for the tracker under test, space-separated (experiments)")
	flag.Parse()
	scales = parseLoads(*scaleList)
	statusRates = parseLoads(*statusList)
	sweepConns = parseLoads(*sweep)
	saturationConns = parseLoads(*satConns)
	abs, err := filepath.Abs(*root)
	must(err)
	r := &report{Root: abs, Started: time.Now(), Machine: machine()}
	ctx := context.Background()
	if *tracker {
		must(runTracker(ctx, r, *step, parseLoads(*loads), *codes))
	}
	if *lookup {
		must(runLookup(ctx, r))
	}
	if *catalogueCodes > 0 {
		must(runCatalogue(ctx, r, *catalogueCodes))
	}
	if *propagation {
		must(runPropagation(ctx, r))
	}
	path := *out
	if !filepath.IsAbs(path) {
		path = filepath.Join(abs, path)
	}
	must(r.write(path))
	fmt.Printf("wrote %s\n", path)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseLoads(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB RAM"
	}
	pg := ""
	if out, err := exec.Command("bash", "-c", "ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1").Output(); err == nil {
		if v, err := exec.Command(filepath.Join(strings.TrimSpace(string(out)), "postgres"), "--version").Output(); err == nil {
			pg = strings.TrimSpace(string(v))
		}
	}
	return fmt.Sprintf("%d cores (%s), %s, %s, %s %s/%s", runtime.NumCPU(), cpu, mem, pg, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// run runs a command in dir and returns its stdout, failing with its output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func toJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
