package main

import (
	"context"
	"fmt"
	"strings"
)

type benchLine struct {
	Name    string
	NsPerOp string
	BPerOp  string
	Allocs  string
	Extra   string
}

// runLookup runs the routing table's Go benchmarks: lookup, delta
// application, compile, and memory per code.
func runLookup(ctx context.Context, r *report) error {
	fmt.Println("==> go test -bench ./internal/routing")
	out, err := run(ctx, r.Root, nil, "go", "test", "./internal/routing/", "-run", "^$",
		"-bench", "Lookup|ApplyDelta|Compile|TableMemory", "-benchmem", "-benchtime", "1x", "-count", "1")
	if err != nil {
		return err
	}
	// Second pass with a real benchtime for the fast ones.
	out2, err := run(ctx, r.Root, nil, "go", "test", "./internal/routing/", "-run", "^$",
		"-bench", "Lookup|ApplyDelta", "-benchmem", "-benchtime", "300000x", "-count", "1")
	if err != nil {
		return err
	}
	byName := map[string]benchLine{}
	var order []string
	for _, o := range []string{out, out2} {
		for _, l := range strings.Split(o, "\n") {
			f := strings.Fields(l)
			if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
				continue
			}
			b := benchLine{Name: strings.TrimSuffix(f[0], "-2")}
			for i := 2; i+1 < len(f); i += 2 {
				switch f[i+1] {
				case "ns/op":
					b.NsPerOp = f[i]
				case "B/op":
					b.BPerOp = f[i]
				case "allocs/op":
					b.Allocs = f[i]
				default:
					b.Extra += f[i] + " " + f[i+1] + " "
				}
			}
			if _, seen := byName[b.Name]; !seen {
				order = append(order, b.Name)
			}
			byName[b.Name] = b
		}
	}
	for _, n := range order {
		r.Lookup = append(r.Lookup, byName[n])
	}
	return nil
}
