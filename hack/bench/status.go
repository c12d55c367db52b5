package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"promocodes.dev/promo-operator/internal/loadgen"
)

// statusRates are the offered loads of the status-change steps
// (-status-rates; empty: skip).
var statusRates = []int{250, 500, 1000}

// beforeRef, when set (-before-ref), adds the tracker built from that git
// ref as a target, on a database of its own migrations: the group commit
// before and after a change, measured in the same run.
var beforeRef string

// statusStep is one offered load of status changes: postbacks with
// conv_status=approved for orders recorded pending just before, each one
// an applied change (one transaction: lock, update, history row, commit).
type statusStep struct {
	Result  loadgen.Result `json:"result"`
	Applied int            `json:"applied"` // 200 replies with reason status_changed
	History int            `json:"history"` // conversion_status_changes rows of the step's orders
}

// runStatusChanges seeds pending conversions and then changes them at each
// of statusRates, against the tracker at base.
func runStatusChanges(ctx context.Context, base string, conn *pgx.Conn, codes []string, step time.Duration, meter *cpuMeter, t *target) error {
	for _, rate := range statusRates {
		n := int(float64(rate) * step.Seconds())
		prefix := fmt.Sprintf("status%d-", rate)
		order := func(i int) string { return prefix + strconv.Itoa(i) }
		u := func(i int, status string) string {
			// The same code, so the same offer and goal: the same conversion.
			return base + "/track/promo?amount=19.99&conv_status=" + status + "&adv_order_id=" + order(i) + "&code=" + codes[i%len(codes)]
		}
		// Seeded at the same rate and for as long: n requests, as below.
		ok := make([]bool, n)
		seed := loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: step, Workers: 256,
			URL: func(i int) string { return u(i, "pending") },
			OnReply: func(i, status int, promo string, body []byte) {
				ok[i] = status == 200 && bytes.Contains(body, []byte(`"pending"`))
			},
		})
		if seeded := count(ok); seeded != n {
			return fmt.Errorf("status changes at %d/s: seeded %d of %d pending conversions (%s)", rate, seeded, n, seed)
		}
		changed := make([]bool, n)
		tag := fmt.Sprintf("status%d", rate)
		meter.start()
		res := loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: step, Workers: 256,
			URL: func(i int) string { return u(i, "approved") },
			OnReply: func(i, status int, promo string, body []byte) {
				changed[i] = status == 200 && bytes.Contains(body, []byte(`"status_changed"`))
			},
		})
		cpu := meter.stop()
		applied := count(changed)
		t.CPU[tag] = cpu
		var history int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM conversion_status_changes h JOIN conversions c ON c.id = h.conversion_id
			WHERE c.adv_order_id LIKE $1`, prefix+"%").Scan(&history); err != nil {
			return err
		}
		fmt.Printf("    %s: %s; applied %d, history rows %d; CPU cores: loadgen %.2f, server %.2f, postgres %.2f\n",
			tag, res, applied, history, cpu.LoadGen, cpu.Server, cpu.Postgres)
		t.StatusSteps = append(t.StatusSteps, statusStep{Result: res, Applied: applied, History: history})
	}
	return nil
}

// buildBefore builds cmd/tracker of beforeRef (git archive of the
// repository at root) into dir and returns the binary and the ref's commit.
func buildBefore(ctx context.Context, root, dir string) (string, string, error) {
	commit, err := run(ctx, root, nil, "git", "rev-parse", "--short", beforeRef+"^{commit}")
	if err != nil {
		return "", "", err
	}
	src := filepath.Join(dir, "before-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", "", err
	}
	if _, err := run(ctx, root, nil, "bash", "-c", fmt.Sprintf("git archive --format=tar %q | tar -x -C %q", beforeRef, src)); err != nil {
		return "", "", err
	}
	bin := filepath.Join(dir, "tracker-before")
	if _, err := run(ctx, src, nil, "go", "build", "-o", bin, "./cmd/tracker"); err != nil {
		return "", "", err
	}
	return bin, string(bytes.TrimSpace([]byte(commit))), nil
}

func count(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}
