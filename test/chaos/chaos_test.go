// Package chaos proves that promo-operator loses nothing it acknowledged and
// doubles nothing while its parts fail under steady load: PostgreSQL restarts,
// a tracker is killed with SIGKILL and restarted, the manager restarts.
// `make test` runs a short form; `make chaos` runs it longer (CHAOS_DURATION).
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"promocodes.dev/promo-operator/internal/devstack"
	"promocodes.dev/promo-operator/internal/loadgen"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
	"promocodes.dev/promo-operator/internal/testutil/poll"
	"promocodes.dev/promo-operator/internal/testutil/stacktest"
)

var manifests = fixtures.NamespaceYAML("chaos") + "---\n" + fixtures.OfferYAML("chaos", "steady", 900, true) + "---\n" +
	fixtures.PromoCodeYAML("chaos", "chaos1", "CHAOS1", "steady", 1, "")

func TestNoAcknowledgedConversionLost(t *testing.T) {
	duration := 24 * time.Second
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil && d > 0 {
		duration = d
	}
	ctx := context.Background()
	s := stacktest.Start(t, ctx, devstack.Options{})
	if _, err := s.Kubectl(ctx, strings.NewReader(manifests), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	tracker := s.Trackers["tracker"]
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := devstack.WaitServable(wctx, tracker.URL, "CHAOS1", 0); err != nil {
		t.Fatal(err)
	}
	// The tracker needs its snapshot on disk to come back while the manager is down.
	waitFile(t, tracker.SnapshotFile, "CHAOS1")

	var mu sync.Mutex
	acked := map[string]string{} // request (adv_param1) -> conversion_id
	replies := map[string]int{}
	done := make(chan loadgen.Result)
	go func() {
		done <- loadgen.Run(ctx, loadgen.Config{Rate: 400, Duration: duration, Workers: 64,
			URL: func(i int) string {
				// adv_param1 names the request. Only even requests carry an
				// adv_order_id: the unique order key would turn a double of
				// those into a "duplicate" reply, so the odd ones are where a
				// tracker that stored a conversion twice would show.
				u := fmt.Sprintf("%s/track/promo?code=CHAOS1&amount=10&adv_param1=chaos-%d", tracker.URL, i)
				if i%2 == 0 {
					u += fmt.Sprintf("&adv_order_id=chaos-%d", i)
				}
				return u
			},
			OnReply: func(i, status int, _ string, body []byte) {
				var r devstack.Reply
				_ = json.Unmarshal(body, &r)
				mu.Lock()
				defer mu.Unlock()
				replies[fmt.Sprintf("%d %s", status, r.Status)]++
				if status == 200 && r.Status == "approved" {
					acked[fmt.Sprintf("chaos-%d", i)] = r.ConversionID
				}
			},
		})
	}()

	step := duration / 6
	faults := []struct {
		name string
		do   func() error
	}{
		{"restart PostgreSQL", func() error { return s.RestartPostgres(ctx) }},
		{"kill -9 the tracker and restart it", func() error {
			tracker.Kill()
			_, err := s.StartTracker(ctx, "tracker", 0)
			return err
		}},
		{"restart the manager", func() error {
			if err := s.StopManager(); err != nil {
				return err
			}
			return s.StartManager(ctx)
		}},
	}
	for _, f := range faults {
		time.Sleep(step)
		start := time.Now()
		if err := f.do(); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		t.Logf("%s: back in %s", f.name, time.Since(start).Round(time.Millisecond))
	}
	res := <-done
	// Stop the tracker gracefully so anything queued is committed before we count.
	if err := s.Trackers["tracker"].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Rows per request, so per acknowledged conversion: exactly one, carrying
	// the acknowledged id. Nothing in the schema keeps a request without an
	// adv_order_id from being stored twice under two ids; this does.
	rows, err := conn.Query(ctx, `select adv_param1, id::text from conversions where adv_param1 like 'chaos-%'`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string][]string{} // request -> ids of its rows
	total := 0
	for rows.Next() {
		var req, id string
		if err := rows.Scan(&req, &id); err != nil {
			t.Fatal(err)
		}
		stored[req] = append(stored[req], id)
		total++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost, doubled, wrongID := 0, 0, 0
	for req, id := range acked {
		ids := stored[req]
		switch {
		case len(ids) == 0:
			lost++
		case !slices.Contains(ids, id):
			wrongID++
		}
	}
	// One request, one row, whether its reply arrived or not.
	for req, ids := range stored {
		if len(ids) > 1 {
			doubled++
			if doubled <= 5 {
				t.Logf("%s (acknowledged as %q) has %d rows: %v", req, acked[req], len(ids), ids)
			}
		}
	}
	t.Logf("sent %d, acknowledged %d, rows %d, lost %d, doubled %d, replies %v, transport errors %d",
		res.Sent, len(acked), total, lost, doubled, replies, res.Errors)
	fmt.Printf("chaos: sent=%d acknowledged=%d rows=%d lost=%d doubled=%d\n", res.Sent, len(acked), total, lost, doubled)
	if lost != 0 || doubled != 0 || wrongID != 0 {
		t.Fatalf("lost %d, doubled %d, acknowledged with another id %d", lost, doubled, wrongID)
	}
	if len(acked) < res.Sent/2 {
		t.Fatalf("only %d of %d requests acknowledged: the faults should cost seconds, not most of the run", len(acked), res.Sent)
	}
}

func waitFile(t *testing.T, path, contains string) {
	t.Helper()
	poll.Until(t, 30*time.Second, func() (bool, string) {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), contains), fmt.Sprintf("%s never contained %s", path, contains)
	})
}
