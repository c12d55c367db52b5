// Package routeserver is the manager side of the routing-table sync
// (SPEC §5, docs/sync.md). On every manager replica it watches Offers,
// PromoCodes, PromoCodeSets and token Secrets in the manager's cache, recompiles only what
// an event touched (one folded code's group, the Offers sharing an id) — at
// once, or once per interval during a burst — and streams the table to
// trackers: a snapshot, then deltas, with heartbeats, over HTTP with a bearer
// token.
package routeserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	corev1 "k8s.io/api/core/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// Message is one line of the stream, the wire type the trackers' sync client
// decodes too.
type Message = routing.Message

// Server serves the routing table. It is a manager.Runnable that runs on
// every replica (NeedLeaderElection is false).
type Server struct {
	Addr      string
	Token     string
	Cache     cache.Cache
	Log       logr.Logger
	Interval  time.Duration // shortest time between two deltas (default 10ms)
	Heartbeat time.Duration // default 10s
	ClientBuf int           // messages buffered per client before it is dropped (default 256)
	// SecretReader reads Storefronts' signing secrets (the manager's API
	// reader: the cache holds hashes). See storefronts.go.
	SecretReader client.Reader
	// TLS, when set, serves the routes over TLS only (see tls.go).
	TLS *TLSFiles

	mu      sync.Mutex
	table   *routing.Table
	epoch   string
	counter uint64
	clients map[chan []byte]bool // true: the client may receive storefront secrets
	dirty   dirtySet
	sets    setState // per-PromoCodeSet signatures, see sets.go
	kick    chan struct{}
	metrics *metrics

	readyOnce sync.Once
	ready     chan struct{} // closed once the first full table is built
}

type dirtySet struct {
	codes       map[string]struct{}
	offerIDs    map[int64]struct{}
	offers      map[routing.Ref]struct{}
	storefronts map[routing.Ref]struct{}
}

func newDirtySet() dirtySet {
	return dirtySet{codes: map[string]struct{}{}, offerIDs: map[int64]struct{}{}, offers: map[routing.Ref]struct{}{},
		storefronts: map[routing.Ref]struct{}{}}
}

func (d *dirtySet) empty() bool {
	return len(d.codes)+len(d.offerIDs)+len(d.offers)+len(d.storefronts) == 0
}

// NeedLeaderElection is false: every replica serves trackers.
func (s *Server) NeedLeaderElection() bool { return false }

func (s *Server) defaults() {
	if s.Interval == 0 {
		s.Interval = 10 * time.Millisecond
	}
	if s.Heartbeat == 0 {
		s.Heartbeat = 10 * time.Second
	}
	if s.ClientBuf == 0 {
		s.ClientBuf = 256
	}
	s.clients = map[chan []byte]bool{}
	s.dirty = newDirtySet()
	s.kick = make(chan struct{}, 1)
	// Unique across restarts: the start instant, then a counter.
	s.epoch = strconv.FormatInt(time.Now().UnixNano(), 36)
}

func (s *Server) readyCh() chan struct{} {
	s.readyOnce.Do(func() { s.ready = make(chan struct{}) })
	return s.ready
}

// Ready is closed once the caches synced and the first full table was
// built: from then on the server answers trackers (before, 503).
func (s *Server) Ready() <-chan struct{} { return s.readyCh() }

// ReadyCheck is a healthz.Checker for the manager's /readyz: ok once Ready.
func (s *Server) ReadyCheck(*http.Request) error {
	select {
	case <-s.readyCh():
		return nil
	default:
		return errors.New("the route server has not built its first table yet")
	}
}

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.defaults()
	s.metrics = newMetrics(ctrlmetrics.Registry)
	l, err := s.listen(ctx)
	if err != nil {
		return fmt.Errorf("route server: %w", err)
	}
	if l == nil {
		return nil // ctx ended while waiting for the certificate
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	if err := s.watch(ctx); err != nil {
		return err
	}
	if !s.Cache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	if err := s.build(ctx); err != nil {
		return err
	}
	close(s.readyCh())
	s.Log.Info("Route server serving", "addr", l.Addr().String(), "tls", s.TLS != nil, "version", s.table.Version(), "codes", s.table.Len(),
		"offers", s.table.Offers(), "storefronts", s.table.Storefronts())
	go s.heartbeats(ctx)
	s.publishLoop(ctx)
	if err := <-errc; err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

func (s *Server) nextVersion() string {
	s.counter++
	return s.epoch + "-" + strconv.FormatUint(s.counter, 10)
}

// build compiles the whole table from the cache, once at start-up. What the
// informers marked before is in the listing: the marks are dropped first, so
// the first flush does not compile the whole table a second time (an event
// after the drop is marked again and flushed).
func (s *Server) build(ctx context.Context) error {
	s.mu.Lock()
	s.dirty = newDirtySet()
	s.mu.Unlock()
	var offers trackingv1alpha1.OfferList
	if err := s.Cache.List(ctx, &offers); err != nil {
		return err
	}
	var codes trackingv1alpha1.PromoCodeList
	if err := s.Cache.List(ctx, &codes); err != nil {
		return err
	}
	op := make([]*trackingv1alpha1.Offer, len(offers.Items))
	for i := range offers.Items {
		op[i] = &offers.Items[i]
	}
	tokens, err := kube.Resolver{Reader: s.Cache}.Tokens(ctx, op)
	if err != nil {
		return err
	}
	claims := make([]*routing.Claim, len(codes.Items))
	for i := range codes.Items {
		claims[i] = kube.Claim(&codes.Items[i])
	}
	entries, err := s.setClaims(ctx)
	if err != nil {
		return err
	}
	claims = append(claims, entries...)
	storefronts, err := s.buildStorefronts(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := routing.Compile(s.nextVersion(), kube.Offers(op), claims, tokens)
	snap.Storefronts = storefronts
	s.table = routing.NewTable(snap)
	s.metrics.observe(s.table)
	return nil
}

// watch registers informer handlers that mark what changed.
func (s *Server) watch(ctx context.Context) error {
	codeInf, err := s.Cache.GetInformer(ctx, &trackingv1alpha1.PromoCode{})
	if err != nil {
		return err
	}
	offerInf, err := s.Cache.GetInformer(ctx, &trackingv1alpha1.Offer{})
	if err != nil {
		return err
	}
	secretInf, err := s.Cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	if err := s.watchSets(ctx); err != nil {
		return err
	}
	onCode := func(obj any) {
		if pc, ok := unwrap(obj).(*trackingv1alpha1.PromoCode); ok {
			s.mark(func(d *dirtySet) { d.codes[routing.Fold(pc.Spec.Code)] = struct{}{} })
		}
	}
	onOffer := func(obj any) {
		if o, ok := unwrap(obj).(*trackingv1alpha1.Offer); ok {
			s.mark(func(d *dirtySet) { d.offerIDs[o.Spec.ID] = struct{}{}; d.offers[kube.RefOf(o)] = struct{}{} })
		}
	}
	onSecret := func(obj any) {
		sec, ok := unwrap(obj).(*corev1.Secret)
		if !ok {
			return
		}
		var list trackingv1alpha1.OfferList
		if err := s.Cache.List(ctx, &list, client.MatchingFields{kube.IndexTokenSecret: sec.Namespace + "/" + sec.Name}); err != nil {
			s.Log.Error(err, "Failed to list Offers using a Secret")
			return
		}
		for i := range list.Items {
			onOffer(&list.Items[i])
		}
	}
	for _, w := range []struct {
		inf cache.Informer
		fn  func(any)
	}{{codeInf, onCode}, {offerInf, onOffer}, {secretInf, onSecret}} {
		if err := onRelevant(w.inf, w.fn); err != nil {
			return err
		}
	}
	return s.watchStorefronts(ctx)
}

func unwrap(obj any) any {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (s *Server) mark(f func(*dirtySet)) {
	s.mu.Lock()
	f(&s.dirty)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// retryDelay is the pause before publishing again after a failure.
const retryDelay = 100 * time.Millisecond

// publishLoop publishes a change at once when the last delta is at least
// Interval old; changes that arrive sooner wait for that instant and go out
// together, so a burst of edits costs one delta per Interval while a lone edit
// waits for nothing.
func (s *Server) publishLoop(ctx context.Context) {
	var last time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if !sleep(ctx, timer, time.Until(last.Add(s.Interval))) {
			return
		}
		published, err := s.flush(ctx)
		if published {
			last = time.Now()
		}
		if err != nil {
			// The work was put back; retry after a pause, not in a tight loop.
			s.Log.Error(err, "Failed to publish a routing delta; retrying", "retry_in", retryDelay)
			if !sleep(ctx, timer, retryDelay) {
				return
			}
			s.mark(func(*dirtySet) {})
		}
	}
}

// sleep waits d (nothing when d <= 0) on timer, a stopped timer; false when
// ctx ended first.
func sleep(ctx context.Context, timer *time.Timer, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer.Reset(d)
	select {
	case <-ctx.Done():
		timer.Stop()
		return false
	case <-timer.C:
		return true
	}
}

// flush recompiles what is dirty and publishes one delta, if anything changed.
func (s *Server) flush(ctx context.Context) (published bool, err error) {
	s.mu.Lock()
	d := s.dirty
	s.dirty = newDirtySet()
	s.mu.Unlock()
	if d.empty() {
		return false, nil
	}
	delta, err := s.compile(ctx, d)
	if err != nil {
		s.mu.Lock() // put the work back
		for k := range d.codes {
			s.dirty.codes[k] = struct{}{}
		}
		for k := range d.offerIDs {
			s.dirty.offerIDs[k] = struct{}{}
		}
		for k := range d.offers {
			s.dirty.offers[k] = struct{}{}
		}
		for k := range d.storefronts {
			s.dirty.storefronts[k] = struct{}{}
		}
		s.mu.Unlock()
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recompiled := delta.Objects()
	delta = s.table.Changes(delta)
	s.metrics.unchanged.Add(float64(recompiled - delta.Objects()))
	if delta.Objects() == 0 {
		return false, nil
	}
	delta.Version = s.nextVersion()
	s.table = s.table.Apply(delta)
	line, plain, err := encodeBoth(Message{Type: "delta", Version: delta.Version, Delta: &delta})
	if err != nil {
		return false, err
	}
	s.broadcast(line, plain)
	s.metrics.observe(s.table)
	s.metrics.deltas.Inc()
	s.metrics.batch.Observe(float64(delta.Objects()))
	return true, nil
}

func (s *Server) compile(ctx context.Context, d dirtySet) (routing.Delta, error) {
	var delta routing.Delta
	res := kube.Resolver{Reader: s.Cache}
	// PromoCodes and PromoCodeSet entries; each set read once for all its
	// dirty codes.
	folded := make([]string, 0, len(d.codes))
	for f := range d.codes {
		folded = append(folded, f)
	}
	groups, err := res.ClaimsOn(ctx, folded)
	if err != nil {
		return delta, err
	}
	for _, f := range folded {
		delta.Codes = append(delta.Codes, routing.CompileGroup(f, groups[f]))
	}
	upserted := map[string]bool{}
	var losers []string
	for id := range d.offerIDs {
		same, err := res.OffersWithID(ctx, id)
		if err != nil {
			return delta, err
		}
		tokens, err := res.Tokens(ctx, same)
		if err != nil {
			return delta, err
		}
		// The offer chain; duplicates and invalid specs route nothing and
		// are deleted below.
		compiled, _ := routing.CompileOffers(kube.Offers(same), tokens)
		for _, co := range compiled {
			delta.Offers = append(delta.Offers, co)
			upserted[co.Ref] = true
		}
		for _, o := range same {
			losers = append(losers, kube.RefOf(o).String())
		}
	}
	for ref := range d.offers {
		if !upserted[ref.String()] {
			delta.DeletedOffers = append(delta.DeletedOffers, ref.String())
		}
	}
	// An offer both deleted (by ref) and upserted cannot happen: refs are
	// deleted only when not upserted. Losers of an id are deleted too.
	for _, r := range losers {
		if !upserted[r] && !contains(delta.DeletedOffers, r) {
			delta.DeletedOffers = append(delta.DeletedOffers, r)
		}
	}
	return delta, s.compileStorefronts(ctx, d.storefronts, &delta)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func encode(m Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// encodeBoth encodes m as clients allowed storefront secrets get it, and as
// the others do (the same line when m carries no storefronts).
func encodeBoth(m Message) (line, plain []byte, err error) {
	if line, err = encode(m); err != nil {
		return nil, nil, err
	}
	if p := withoutSecrets(m); p.Snapshot != m.Snapshot || p.Delta != m.Delta {
		if plain, err = encode(p); err != nil {
			return nil, nil, err
		}
		return line, plain, nil
	}
	return line, line, nil
}

// broadcast queues line to every client allowed storefront secrets and plain
// to the others; a client too slow to keep up is dropped (it reconnects and
// gets a fresh snapshot). Callers hold s.mu.
func (s *Server) broadcast(line, plain []byte) {
	for c, secrets := range s.clients {
		l := plain
		if secrets {
			l = line
		}
		select {
		case c <- l:
		default:
			delete(s.clients, c)
			close(c)
			s.metrics.dropped.Inc()
		}
	}
	s.metrics.clients.Set(float64(len(s.clients)))
}

func (s *Server) heartbeats(ctx context.Context) {
	t := time.NewTicker(s.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.clients {
				delete(s.clients, c)
				close(c)
			}
			s.mu.Unlock()
			return
		case <-t.C:
			s.mu.Lock()
			if line, err := encode(Message{Type: "heartbeat", Version: s.table.Version()}); err == nil {
				s.broadcast(line, line)
			}
			s.mu.Unlock()
		}
	}
}

// Handler serves GET /v1/routes (the stream) and GET /v1/snapshot.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/routes", s.auth(s.serveStream))
	mux.HandleFunc("GET /v1/snapshot", s.auth(s.serveSnapshot))
	return mux
}

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + s.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="promo-operator routes"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		select {
		case <-s.readyCh():
		default:
			http.Error(w, "caches not synced yet", http.StatusServiceUnavailable)
			return
		}
		next(w, r)
	}
}

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	snap := s.table.Snapshot()
	s.mu.Unlock()
	if !secretsAllowed(r) {
		s.withholding(r, len(snap.Storefronts))
		snap.Storefronts = nil
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(snap)
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	c := make(chan []byte, s.ClientBuf)
	secrets := secretsAllowed(r)
	s.mu.Lock()
	snap := s.table.Snapshot()
	m := Message{Type: "snapshot", Version: snap.Version, Snapshot: &snap}
	if !secrets {
		s.withholding(r, len(snap.Storefronts))
		m = withoutSecrets(m)
	}
	line, err := encode(m)
	if err != nil {
		s.mu.Unlock()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	c <- line
	s.clients[c] = secrets
	s.metrics.clients.Set(float64(len(s.clients)))
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if _, ok := s.clients[c]; ok {
			delete(s.clients, c)
			close(c)
		}
		s.metrics.clients.Set(float64(len(s.clients)))
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case line, ok := <-c:
			if !ok {
				return
			}
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(line); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

type metrics struct {
	version *prometheus.GaugeVec
	codes   prometheus.Gauge
	offers  prometheus.Gauge
	clients prometheus.Gauge
	deltas  prometheus.Counter
	dropped prometheus.Counter
	batch   prometheus.Histogram
	// unchanged counts what was recompiled but not published.
	unchanged prometheus.Counter

	mu   sync.Mutex // the metrics are process-wide; servers in one process (tests) share them
	last string
}

var registerOnce sync.Once
var shared *metrics

func newMetrics(reg prometheus.Registerer) *metrics {
	registerOnce.Do(func() {
		shared = &metrics{
			version: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promo_routes_table_info", Help: "Routing table version served (value 1)."}, []string{"version"}),
			codes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_routes_table_codes", Help: "Distinct codes in the routing table."}),
			offers:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_routes_table_offers", Help: "Offers in the routing table."}),
			clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "promo_routes_clients", Help: "Trackers connected to the route stream."}),
			deltas:  prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_routes_deltas_total", Help: "Deltas published."}),
			dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_routes_slow_clients_dropped_total", Help: "Clients dropped for not keeping up."}),
			batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "promo_routes_delta_objects", Help: "Code groups and offers changed per delta.",
				Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
			unchanged: prometheus.NewCounter(prometheus.CounterOpts{Name: "promo_routes_unchanged_total", Help: "Code groups and offers recompiled after an event and found unchanged, so not published (status writes, for one)."}),
		}
		reg.MustRegister(shared.version, shared.codes, shared.offers, shared.clients, shared.deltas, shared.dropped, shared.batch, shared.unchanged)
	})
	return shared
}

func (m *metrics) observe(t *routing.Table) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last != "" {
		m.version.DeleteLabelValues(m.last)
	}
	m.last = t.Version()
	m.version.WithLabelValues(m.last).Set(1)
	m.codes.Set(float64(t.Len()))
	m.offers.Set(float64(t.Offers()))
}

// onRelevant calls fn for every added or deleted object of inf, and with
// the old and the new object of every update that changes what routes
// (kube.Changed): status-only writes and resyncs rebuild nothing, and
// Table.Changes stays the safety net.
func onRelevant(inf cache.Informer, fn func(any)) error {
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: fn,
		UpdateFunc: func(old, cur any) {
			if kube.Changed(old, cur) {
				fn(old)
				fn(cur)
			}
		},
		DeleteFunc: fn,
	})
	return err
}
