package tracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Row is one conversion to store (SPEC §4).
type Row struct {
	ID           uuid.UUID
	CreatedAt    time.Time
	PromoCode    string
	PromoCodeRef string
	OfferID      int64
	AffiliateID  int64
	GoalID       int64
	Status       string
	Amount       string // exact decimals as text, cast to numeric by PostgreSQL
	Payout       string
	Revenue      string
	Currency     string
	AdvOrderID   string // "" means none
	AdvParams    [5]string
	Source       string // postback, js, img, iframe, shopify, woocommerce
	IP           string
	UserAgent    string
	// ExplicitStatus: the request named Status (conv_status) rather than
	// taking the goal's. Such a row whose order turns out to be recorded
	// already asks for a status change (SPEC §3) — the handler applies it at
	// once; a spooled row, at replay.
	ExplicitStatus bool
}

// Result is what the writer tells a waiting request.
type Result struct {
	// Duplicate: a conversion with the same (offer, goal, adv_order_id)
	// already exists; ExistingID names it when it could be read.
	Duplicate  bool
	ExistingID uuid.UUID
	// ExistingStatus is that conversion's status when it could be read.
	ExistingStatus string
	// Err: not stored. A row stored in the local spool (PostgreSQL
	// unreachable) is answered like a committed one.
	Err error
}

// errCommitted marks an error met after the batch was committed (reading
// back which rows were inserted): spooling would not be true to it.
var errCommitted = errors.New("batch committed, reading back its ids failed")

// unreachable reports whether err means PostgreSQL could not be reached —
// a connection-level failure, which a spool bridges — as opposed to
// PostgreSQL refusing the statement, an encoding error, or a failure after
// the commit (errCommitted), which a spool would not fix. Connection-level
// are: failing to connect, network errors, the connection ending (EOF),
// timeouts, and PostgreSQL's own errors of class 08 (connection exception),
// 53 (insufficient resources) and 57 (operator intervention: shutdown,
// "cannot connect now").
func unreachable(err error) bool {
	if err == nil || errors.Is(err, errCommitted) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if len(pgErr.Code) < 2 {
			return false
		}
		switch pgErr.Code[:2] {
		case "08", "53", "57":
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		errors.Is(err, errBreakerOpen)
}

// ErrQueueFull is returned when the bounded queue has no room.
var ErrQueueFull = errors.New("write queue full")

// ErrWriterClosed is returned by Submit after Close: a request still in
// flight when Shutdown's timeout passed is answered 503, not acknowledged.
var ErrWriterClosed = errors.New("writer closed")

type pending struct {
	row  Row
	done chan Result
}

// Writer commits rows in batches (group commit): each writer goroutine takes
// everything queued — up to BatchMax rows — and inserts it in one statement
// and one transaction; every request is answered after its commit.
type Writer struct {
	pool     *pgxpool.Pool
	spool    *Spool // nil: no spool, failures answer 503
	queue    chan pending
	batchMax int
	metrics  *Metrics
	stopped  chan struct{}

	// closeMu orders Close's close(queue) after every send in Submit: a
	// send holds it for reading, Close for writing.
	closeMu sync.RWMutex
	closed  bool

	// openUntil is the circuit breaker (unix nanoseconds; 0: closed): after
	// PostgreSQL was found unreachable, batches go straight to the spool
	// until then, instead of each waiting out the commit timeout; then one
	// batch probes PostgreSQL while the others keep spooling.
	openUntil atomic.Int64
}

// breakerWindow is how long batches go straight to the spool after
// PostgreSQL was found unreachable, before one batch probes it again.
const breakerWindow = time.Second

// commitTimeout bounds one batch's commit.
const commitTimeout = 5 * time.Second

// errBreakerOpen is why a batch went to the spool without trying
// PostgreSQL: it was found unreachable a moment ago.
var errBreakerOpen = errors.New("PostgreSQL unreachable a moment ago; not retried yet")

// bypass reports whether a batch goes straight to the spool. When the window
// is over, the first batch to ask probes (and holds the breaker open for the
// others while it does).
func (w *Writer) bypass() bool {
	if w.spool == nil {
		return false
	}
	until := w.openUntil.Load()
	if until == 0 {
		return false
	}
	now := time.Now().UnixNano()
	if now < until {
		return true
	}
	return !w.openUntil.CompareAndSwap(until, now+int64(commitTimeout))
}

// NewWriter returns a writer with a queue of queueSize rows.
func NewWriter(pool *pgxpool.Pool, queueSize, batchMax int, m *Metrics) *Writer {
	return &Writer{pool: pool, queue: make(chan pending, queueSize), batchMax: batchMax, metrics: m, stopped: make(chan struct{})}
}

// WithSpool makes the writer spool batches it cannot commit because
// PostgreSQL is unreachable, and replay them when it is back.
func (w *Writer) WithSpool(s *Spool) *Writer {
	w.spool = s
	return w
}

// Submit queues a row and waits for its commit. It never blocks on a full
// queue: it fails with ErrQueueFull instead.
func (w *Writer) Submit(ctx context.Context, row Row) Result {
	p := pending{row: row, done: make(chan Result, 1)}
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return Result{Err: ErrWriterClosed}
	}
	select {
	case w.queue <- p:
	default:
		w.closeMu.RUnlock()
		return Result{Err: ErrQueueFull}
	}
	w.closeMu.RUnlock()
	w.metrics.QueueDepth.Set(float64(len(w.queue)))
	// Once queued, the row will be committed or failed by the writer even if
	// the client goes away; wait for that so the answer is true.
	return <-p.done
}

// Run runs n writer goroutines until the queue is closed by Close and
// drained.
func (w *Writer) Run(n int) {
	done := make(chan struct{}, n)
	for range n {
		go func() {
			w.loop()
			done <- struct{}{}
		}()
	}
	go func() {
		for range n {
			<-done
		}
		close(w.stopped)
	}()
}

// Close stops accepting rows, commits everything queued and returns when done.
// Submit calls after Close fail with ErrWriterClosed.
func (w *Writer) Close() {
	w.closeMu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.closeMu.Unlock()
	<-w.stopped
}

func (w *Writer) loop() {
	batch := make([]pending, 0, w.batchMax)
	var enc encoders
	for {
		p, ok := <-w.queue
		if !ok {
			return
		}
		batch = append(batch[:0], p)
	fill:
		for len(batch) < w.batchMax {
			select {
			case p, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		w.metrics.QueueDepth.Set(float64(len(w.queue)))
		w.commit(&enc, batch)
	}
}

// encoders is one writer goroutine's reused encoding state.
type encoders struct {
	copy   copyEncoder
	arrays batchEncoder
	// insertUntil: after a COPY met a taken order key, batches go through
	// insertSQL until then, since retried orders tend to come in runs.
	insertUntil time.Time
}

// conversionColumns are the columns both encoders write, in their order.
// updated_at is written as created_at (SPEC §4: = created_at until a status
// change): rows of this version do not need migration 2's trigger, which
// is there for trackers of the previous version during a rolling upgrade.
const conversionColumns = `conversions (id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id,
	status, amount, payout, revenue, currency, adv_order_id, adv_param1, adv_param2, adv_param3, adv_param4, adv_param5,
	source, ip, user_agent, updated_at)`

// copySQL is the group commit's fast path: the binary COPY stream of
// copyEncoder. A taken order key fails the whole COPY, and the batch is
// redone with insertSQL.
const copySQL = `COPY ` + conversionColumns + ` FROM STDIN (FORMAT binary)`

// insertRows inserts the 21 binary column arrays of batchEncoder.encode.
const insertRows = `INSERT INTO ` + conversionColumns + `
SELECT id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id,
	status, amount::numeric, payout::numeric, revenue::numeric, currency, adv_order_id, p1, p2, p3, p4, p5,
	source, ip::inet, user_agent, created_at
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
	$19::text[], $20::text[], $21::text[])
	AS u(id, created_at, promo_code, promo_code_ref, offer_id, affiliate_id, goal_id, status, amount, payout, revenue, currency,
	adv_order_id, p1, p2, p3, p4, p5, source, ip, user_agent)`

// insertSQL is the group commit when an order key may be taken: such a row is skipped,
// and the row count tells whether any was. No RETURNING: the ids come back
// only when a batch had duplicates (insertedSQL).
const insertSQL = insertRows + `
ON CONFLICT (offer_id, goal_id, adv_order_id) WHERE adv_order_id IS NOT NULL DO NOTHING`

// insertedSQL names which of a batch's ids were inserted.
const insertedSQL = `SELECT id FROM conversions WHERE id = ANY($1::uuid[])`

// replaySQL inserts spooled rows: any conflict (the id, already replayed by
// an earlier attempt; or the order key) means the row is already there.
const replaySQL = insertRows + `
ON CONFLICT DO NOTHING`

// ReplayLoop replays the spool every interval while rows wait, until stop is
// closed; then it tries once more, so a clean shutdown leaves nothing spooled
// when PostgreSQL is reachable.
func (w *Writer) ReplayLoop(stop <-chan struct{}, interval time.Duration, log func(msg string, args ...any)) {
	if w.spool == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.replayOnce(log)
		select {
		case <-stop:
			w.replayOnce(log)
			return
		case <-t.C:
		}
	}
}

func (w *Writer) replayOnce(log func(msg string, args ...any)) {
	if w.spool.Rows() == 0 {
		return
	}
	n, err := w.spool.Replay(w.batchMax, func(rows []Row) error { return w.insertSpooled(rows, log) })
	w.metrics.Replayed.Add(float64(n))
	w.metrics.SpoolRows.Set(float64(w.spool.Rows()))
	if n > 0 || err != nil {
		log("Replayed spooled conversions", "rows", n, "err", err)
	}
}

// insertSpooled inserts spooled rows, then applies as status changes the
// rows that carried conv_status and whose order was recorded already (SPEC
// §3): while PostgreSQL was unreachable such a postback was answered like a
// new conversion, since its stored status could not be known. It is
// idempotent, as Replay needs: a row already there by its own id (an
// earlier replay attempt) is not a change, and a change applied before is
// ChangeSame.
func (w *Writer) insertSpooled(rows []Row, log func(msg string, args ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var enc batchEncoder
	if _, err := w.exec(ctx, "promo_replay", replaySQL, enc.encode(rows)); err != nil {
		return err
	}
	var asks []int
	var ids []pgtype.UUID
	for i := range rows {
		if rows[i].ExplicitStatus && rows[i].AdvOrderID != "" {
			asks = append(asks, i)
			ids = append(ids, pgtype.UUID{Bytes: rows[i].ID, Valid: true})
		}
	}
	if len(asks) == 0 {
		return nil
	}
	found, err := w.pool.Query(ctx, insertedSQL, ids)
	if err != nil {
		return err
	}
	got, err := pgx.CollectRows(found, pgx.RowTo[pgtype.UUID])
	if err != nil {
		return err
	}
	stored := make(map[uuid.UUID]bool, len(got))
	for _, id := range got {
		stored[uuid.UUID(id.Bytes)] = true
	}
	for _, i := range asks { // in spool order: the order they were received
		r := &rows[i]
		if stored[r.ID] {
			continue
		}
		source := r.Source
		if !changeSources[source] {
			source = "postback" // js, img, iframe: the pixel form of a postback
		}
		res, err := w.ChangeStatus(ctx, StatusChange{OfferIDs: []int64{r.OfferID}, GoalID: r.GoalID, AdvOrderID: r.AdvOrderID,
			To: r.Status, Source: source, At: r.CreatedAt})
		if errors.Is(err, ErrBadStatusChange) {
			log("Dropped a spooled status change that cannot be applied", "offer", r.OfferID, "adv_order_id", r.AdvOrderID, "err", err)
			continue
		}
		if err != nil {
			return err
		}
		for _, c := range res {
			w.metrics.SpooledChanges.WithLabelValues(c.Outcome.String()).Inc()
			if c.Outcome == ChangeInvalid {
				log("A spooled postback asked for a status change that is not allowed; not applied",
					"conversion_id", c.ConversionID, "offer", c.OfferID, "goal", c.GoalID, "adv_order_id", r.AdvOrderID,
					"from", c.From, "to", c.To, "received", r.CreatedAt)
			}
		}
	}
	return nil
}

func (w *Writer) commit(enc *encoders, batch []pending) {
	start := time.Now()
	n := len(batch)
	rows := make([]Row, n)
	for i, p := range batch {
		rows[i] = p.row
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var inserted map[uuid.UUID]bool
	var err error
	if w.bypass() {
		err = errBreakerOpen
	} else {
		inserted, err = w.insert(ctx, enc, rows)
		switch {
		case err == nil || errors.Is(err, errCommitted):
			w.openUntil.Store(0)
		case w.spool != nil && unreachable(err):
			w.openUntil.Store(time.Now().Add(breakerWindow).UnixNano())
		}
	}
	w.metrics.BatchSize.Observe(float64(n))
	w.metrics.CommitSeconds.Observe(time.Since(start).Seconds())
	if err != nil && w.spool != nil && unreachable(err) {
		serr := w.spool.Append(rows)
		if serr == nil {
			w.metrics.SpoolRows.Set(float64(w.spool.Rows()))
			for _, p := range batch {
				p.done <- Result{}
			}
			return
		}
		err = fmt.Errorf("%w; spooling failed too: %w", err, serr)
	}
	if err != nil {
		err = fmt.Errorf("storing %d conversions: %w", n, err)
		for _, p := range batch {
			p.done <- Result{Err: err}
		}
		return
	}
	for _, p := range batch {
		if inserted == nil || inserted[p.row.ID] {
			p.done <- Result{}
			continue
		}
		res := Result{Duplicate: true}
		_ = w.pool.QueryRow(ctx, `SELECT id, status FROM conversions WHERE offer_id = $1 AND goal_id = $2 AND adv_order_id = $3`,
			p.row.OfferID, p.row.GoalID, p.row.AdvOrderID).Scan(&res.ExistingID, &res.ExistingStatus)
		p.done <- res
	}
}

// exec runs sql, prepared under name on the connection it gets, with binary
// parameters.
func (w *Writer) exec(ctx context.Context, name, sql string, params [][]byte) (pgconn.CommandTag, error) {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Release()
	sd, err := conn.Conn().Prepare(ctx, name, sql) // once per connection: then a map lookup
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	res := conn.Conn().PgConn().ExecStatement(ctx, sd, params, binaryFormats, nil).Read()
	return res.CommandTag, res.Err
}

// uniqueViolation is PostgreSQL's SQLSTATE for a taken unique key.
const uniqueViolation = "23505"

// copyIn runs copySQL with the stream data.
func (w *Writer) copyIn(ctx context.Context, data []byte) error {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	_, err = conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), copySQL)
	return err
}

// insert stores rows with COPY, or with insertSQL when an order key is taken.
// It returns nil when every row was inserted, else the set of ids that were.
func (w *Writer) insert(ctx context.Context, enc *encoders, rows []Row) (map[uuid.UUID]bool, error) {
	if time.Now().After(enc.insertUntil) {
		data, err := enc.copy.encode(rows)
		if err == nil {
			err = w.copyIn(ctx, data)
			if err == nil {
				return nil, nil
			}
			// When the connection breaks, pgconn's CopyFrom returns without
			// waiting for its goroutine that reads data: leave the buffer to it.
			enc.copy.buf = nil
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
				return nil, err
			}
			w.metrics.RedoneBatches.Inc()
			enc.insertUntil = time.Now().Add(time.Second)
		}
	}
	params := enc.arrays.encode(rows)
	tag, err := w.exec(ctx, "promo_insert", insertSQL, params)
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == int64(len(rows)) {
		return nil, nil
	}
	// Some order keys were taken. The rows are committed; ask which.
	ids := make([]pgtype.UUID, len(rows))
	for i := range rows {
		ids[i] = pgtype.UUID{Bytes: rows[i].ID, Valid: true}
	}
	found, err := w.pool.Query(ctx, insertedSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCommitted, err)
	}
	got, err := pgx.CollectRows(found, pgx.RowTo[pgtype.UUID])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCommitted, err)
	}
	inserted := make(map[uuid.UUID]bool, len(got))
	for _, id := range got {
		inserted[uuid.UUID(id.Bytes)] = true
	}
	return inserted, nil
}
