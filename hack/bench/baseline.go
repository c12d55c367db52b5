package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// gif is a 1x1 transparent GIF, the same bytes a pixel reply carries.
var gif = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// serveCeiling is the HTTP ceiling: a minimal Go handler that answers the
// pixel and writes nothing.
func serveCeiling(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/track/promo", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "image/gif")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Promo-Status", "approved")
		_, _ = w.Write(gif)
	})
	return listenAndServe(addr, mux)
}

// serveNaive is the naive tracker: one INSERT (one transaction, one fsync)
// per request, then the reply.
func serveNaive(addr, dbURL string) error {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/track/promo", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		offerID, _ := strconv.ParseInt(q.Get("offer_id"), 10, 64)
		id, _ := uuid.NewV7()
		status := "approved"
		_, err := pool.Exec(r.Context(), `insert into conversions (id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id,
			status, amount, payout, revenue, currency, adv_order_id, source, ip, user_agent)
			values ($1, now(), $2, 'bench/naive', $3, 42, 1, $4, $5::numeric, $5::numeric / 10, 8, 'USD', $6, 'postback', '127.0.0.1', $7)
			on conflict do nothing`,
			id, q.Get("code"), offerID, status, q.Get("amount"), q.Get("adv_order_id"), r.UserAgent())
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "storage_unavailable", "reason": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Promo-Status", status)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": status, "conversion_id": id.String()})
	})
	return listenAndServe(addr, mux)
}

func listenAndServe(addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", l.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	return srv.Serve(l)
}
