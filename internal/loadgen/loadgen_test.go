package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestRunCountsEveryReply(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("i")
		mu.Lock()
		seen[id]++
		mu.Unlock()
		n, _ := strconv.Atoi(id)
		if n%10 == 0 {
			w.Header().Set("X-Promo-Status", "rejected")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, "no:"+id)
			return
		}
		w.Header().Set("X-Promo-Status", "approved")
		fmt.Fprint(w, "ok:"+id)
	}))
	defer srv.Close()

	bodies := make([]string, 1000)
	res := Run(context.Background(), Config{Rate: 2000, Duration: 500 * time.Millisecond, Workers: 8,
		URL: func(i int) string { return srv.URL + "/track/promo?i=" + strconv.Itoa(i) },
		OnReply: func(i, status int, ps string, body []byte) {
			bodies[i] = fmt.Sprintf("%d %s %s", status, ps, body)
		}})

	if res.Sent != 1000 || res.OK != 900 || res.Non200 != 100 || res.Errors != 0 {
		t.Fatalf("sent %d ok %d non200 %d errors %d, want 1000/900/100/0", res.Sent, res.OK, res.Non200, res.Errors)
	}
	if res.Statuses["200 approved"] != 900 || res.Statuses["404 rejected"] != 100 {
		t.Errorf("statuses %v", res.Statuses)
	}
	for i, b := range bodies {
		want := fmt.Sprintf("200 approved ok:%d", i)
		if i%10 == 0 {
			want = fmt.Sprintf("404 rejected no:%d", i)
		}
		if b != want {
			t.Fatalf("reply %d: %q, want %q", i, b, want)
		}
	}
	if len(seen) != 1000 {
		t.Fatalf("server saw %d distinct requests, want 1000", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("request %s arrived %d times: a load generator must not retry", id, n)
		}
	}
	if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P999 || res.P999 < res.P99 {
		t.Errorf("percentiles out of order: %s", res)
	}
}

func TestRunChargesAStalledServer(t *testing.T) {
	// One connection and a server that holds each request 20 ms: requests
	// queue behind each other, and each is charged from its due time, so the
	// median latency grows far beyond the 20 ms of service time.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	res := Run(context.Background(), Config{Rate: 200, Duration: 500 * time.Millisecond, Workers: 1,
		URL: func(int) string { return srv.URL + "/" }})
	if res.OK != 100 {
		t.Fatalf("ok %d, want 100", res.OK)
	}
	// 100 requests at 20 ms each take ≥ 2 s; the last was due at 0.495 s.
	if res.Max < time.Second {
		t.Errorf("max %s: a stalled server's queue must be charged (coordinated omission)", res.Max)
	}
}

func TestRunCountsTransportErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { // accept and hang up at once
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	defer l.Close()
	res := Run(context.Background(), Config{Rate: 500, Duration: 200 * time.Millisecond, Workers: 4,
		URL: func(int) string { return "http://" + l.Addr().String() + "/" }})
	if res.Errors != 100 || res.OK != 0 {
		t.Fatalf("errors %d ok %d, want 100 and 0", res.Errors, res.OK)
	}
}

func TestRunSendsRequestsWithBodies(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 64)
		n, _ := r.Body.Read(b)
		mu.Lock()
		seen[r.URL.Query().Get("i")] = r.Method + " " + r.Header.Get("X-Sig") + " " + string(b[:n])
		mu.Unlock()
	}))
	defer srv.Close()
	res := Run(context.Background(), Config{Rate: 1000, Duration: 200 * time.Millisecond, Workers: 4,
		URL: func(i int) string { return srv.URL + "/hook?i=" + strconv.Itoa(i) },
		Request: func(i int) *Request {
			return &Request{Method: http.MethodPost, Header: []Header{{"X-Sig", "s" + strconv.Itoa(i)}}, Body: []byte("body" + strconv.Itoa(i))}
		}})
	if res.Sent != 200 || res.OK != 200 {
		t.Fatalf("sent %d ok %d, want 200/200", res.Sent, res.OK)
	}
	for i := range 200 {
		if got, want := seen[strconv.Itoa(i)], fmt.Sprintf("POST s%d body%d", i, i); got != want {
			t.Fatalf("request %d: %q, want %q", i, got, want)
		}
	}
}
