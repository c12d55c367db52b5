package kube

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/testutil/poll"
)

// fakeAPI serves the informers of a real controller-runtime cache: List
// returns what the test put there, Watch a watcher the test drives. Events
// go through client-go's reflector, FIFO, transform, store and handlers as
// from an API server.
type fakeAPI struct {
	mu      sync.Mutex
	sets    []*trackingv1alpha1.PromoCodeSet // what the next List of sets returns
	watches chan *watch.FakeWatcher          // each Watch of PromoCodeSets
}

func (a *fakeAPI) newInformer(_ toolscache.ListerWatcher, obj k8sruntime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
	lw := &fakeLW{}
	if _, ok := obj.(*trackingv1alpha1.PromoCodeSet); ok {
		lw.api = a
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, idx)
}

// fakeLW lists and watches one kind of fakeAPI; kinds other than
// PromoCodeSets (api nil) are empty and never change.
type fakeLW struct{ api *fakeAPI }

func (l *fakeLW) ListWithContext(context.Context, metav1.ListOptions) (k8sruntime.Object, error) {
	if l.api == nil {
		return &trackingv1alpha1.PromoCodeList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, nil
	}
	l.api.mu.Lock()
	defer l.api.mu.Unlock()
	list := &trackingv1alpha1.PromoCodeSetList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	for _, s := range l.api.sets {
		list.Items = append(list.Items, *s)
	}
	return list, nil
}

func (l *fakeLW) WatchWithContext(context.Context, metav1.ListOptions) (watch.Interface, error) {
	w := watch.NewFakeWithChanSize(1000, false)
	if l.api != nil {
		l.api.watches <- w
	}
	return w, nil
}

func (l *fakeLW) List(o metav1.ListOptions) (k8sruntime.Object, error) {
	return l.ListWithContext(context.Background(), o)
}

func (l *fakeLW) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), o)
}

// IsWatchListSemanticsUnSupported: the reflector lists, then watches.
func (l *fakeLW) IsWatchListSemanticsUnSupported() bool { return true }

// setFixture is a started cache on a fakeAPI.
type setFixture struct {
	t     testing.TB
	ctx   context.Context
	stop  context.CancelFunc
	cache cache.Cache
	api   *fakeAPI
	w     *watch.FakeWatcher // the PromoCodeSet watch
	rv    int
}

// newSetFixture makes a cache with newCache (NewCache, or cache.New for
// comparison), runs setup on it (indexes, handlers) and starts it.
func newSetFixture(t testing.TB, newCache cache.NewCacheFunc, initial []*trackingv1alpha1.PromoCodeSet,
	setup func(context.Context, cache.Cache) error) *setFixture {
	t.Helper()
	scheme := k8sruntime.NewScheme()
	if err := trackingv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	for _, kind := range []string{"PromoCodeSet", "PromoCode", "Offer"} {
		mapper.Add(trackingv1alpha1.GroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	api := &fakeAPI{sets: initial, watches: make(chan *watch.FakeWatcher, 10)}
	c, err := newCache(&rest.Config{Host: "http://127.0.0.1:1"}, cache.Options{Scheme: scheme, Mapper: mapper, HTTPClient: &http.Client{},
		NewInformer: api.newInformer, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := setup(ctx, c); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	f := &setFixture{t: t, ctx: ctx, stop: cancel, cache: c, api: api, rv: 1}
	f.w = f.nextWatch()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache not synced")
	}
	return f
}

func (f *setFixture) nextWatch() *watch.FakeWatcher {
	f.t.Helper()
	select {
	case w := <-f.api.watches:
		return w
	case <-time.After(30 * time.Second):
		f.t.Fatal("the reflector never watched PromoCodeSets")
		return nil
	}
}

// send puts an event on the watch and waits until the cache's store has it.
func (f *setFixture) send(typ watch.EventType, s *trackingv1alpha1.PromoCodeSet) {
	f.t.Helper()
	f.rv++
	s.ResourceVersion = strconv.Itoa(f.rv)
	f.w.Action(typ, s.DeepCopy())
	poll.Until(f.t, 30*time.Second, func() (bool, string) {
		var got trackingv1alpha1.PromoCodeSet
		err := f.cache.Get(f.ctx, client.ObjectKeyFromObject(s), &got)
		if typ == watch.Deleted {
			return apierrors.IsNotFound(err), fmt.Sprintf("%s still in the cache (%v)", s.Name, err)
		}
		return err == nil && got.ResourceVersion == s.ResourceVersion, fmt.Sprintf("%s not at %s in the cache: %v %s", s.Name, s.ResourceVersion, err, got.ResourceVersion)
	})
}

// holders lists the sets (namespace/name) by one code.
func (f *setFixture) holders(code string, opts ...client.ListOption) []string {
	f.t.Helper()
	var list trackingv1alpha1.PromoCodeSetList
	if err := f.cache.List(f.ctx, &list, append([]client.ListOption{client.MatchingFields{IndexSetFoldedCode: code}}, opts...)...); err != nil {
		f.t.Fatal(err)
	}
	return names(list.Items)
}

func names(sets []trackingv1alpha1.PromoCodeSet) []string {
	out := make([]string, 0, len(sets))
	for i := range sets {
		out = append(out, sets[i].Namespace+"/"+sets[i].Name)
	}
	slices.Sort(out)
	return out
}

func testCodeSet(ns, name, uid string, gen int64, codes ...string) *trackingv1alpha1.PromoCodeSet {
	s := &trackingv1alpha1.PromoCodeSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Generation: gen}}
	for _, c := range codes {
		s.Spec.Codes = append(s.Spec.Codes, trackingv1alpha1.PromoCodeSetEntry{Code: c, AffiliateID: 1})
	}
	return s
}

// directorySize is how many codes, shared codes and sets the directory holds.
func directorySize(c cache.Cache) (codes, multi, sets int) {
	d := c.(*setCache).dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.codes), len(d.multi), len(d.sets)
}

func setupSets(ctx context.Context, c cache.Cache) error { return SetupIndexes(ctx, c) }

// TestSetDirectory: sets are found by any of their folded codes through
// adds, updates that drop and add codes, codes several sets share, deletes,
// a namespace filter, and a relist that drops a set (a tombstone).
func TestSetDirectory(t *testing.T) {
	f := newSetFixture(t, NewCache, []*trackingv1alpha1.PromoCodeSet{testCodeSet("shop", "early", "u0", 1, "EARLY1")}, setupSets)
	eq := func(got []string, want ...string) {
		t.Helper()
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	eq(f.holders("EARLY1"), "shop/early") // from the initial list

	a := testCodeSet("shop", "a", "ua", 1, "anna10", "ANNA10", "BOB15")
	f.send(watch.Added, a)
	eq(f.holders("ANNA10"), "shop/a") // folded, listed once
	eq(f.holders("BOB15"), "shop/a")
	eq(f.holders("anna10")) // lookups take folded codes

	b := testCodeSet("shop", "b", "ub", 1, "BOB15", "CARL20")
	f.send(watch.Added, b)
	other := testCodeSet("other", "b", "uo", 1, "BOB15")
	f.send(watch.Added, other)
	eq(f.holders("BOB15"), "other/b", "shop/a", "shop/b")
	eq(f.holders("BOB15", client.InNamespace("shop")), "shop/a", "shop/b")

	// An update drops BOB15 and adds DORA5; a status write (same generation) changes nothing.
	a = testCodeSet("shop", "a", "ua", 2, "ANNA10", "DORA5")
	f.send(watch.Modified, a)
	eq(f.holders("BOB15"), "other/b", "shop/b")
	eq(f.holders("DORA5"), "shop/a")
	a.Status.Codes = 2
	f.send(watch.Modified, a)
	eq(f.holders("ANNA10"), "shop/a")

	f.send(watch.Deleted, other)
	eq(f.holders("BOB15"), "shop/b")
	f.send(watch.Deleted, b)
	eq(f.holders("BOB15"))
	eq(f.holders("CARL20"))
	poll.Until(t, 30*time.Second, func() (bool, string) {
		codes, multi, sets := directorySize(f.cache)
		return codes == 3 && multi == 0 && sets == 2, fmt.Sprintf("directory holds %d codes (%d shared) of %d sets, want EARLY1, ANNA10, DORA5 of 2", codes, multi, sets)
	})

	// One lookup for several codes lists each set once.
	got, err := Resolver{Reader: f.cache}.SetsWithCodes(f.ctx, []string{"ANNA10", "DORA5", "EARLY1", "NONE"})
	if err != nil {
		t.Fatal(err)
	}
	gotNames := make([]string, 0, len(got))
	for _, s := range got {
		gotNames = append(gotNames, s.Namespace+"/"+s.Name)
	}
	eq(gotNames, "shop/a", "shop/early")

	// A relist without "early": the informer deletes it with a tombstone,
	// which the transform never sees.
	f.api.mu.Lock()
	f.api.sets = []*trackingv1alpha1.PromoCodeSet{a}
	f.api.mu.Unlock()
	f.w.Error(&apierrors.NewResourceExpired("too old").ErrStatus)
	f.w = f.nextWatch()
	poll.Until(t, 30*time.Second, func() (bool, string) {
		_, _, sets := directorySize(f.cache)
		return sets == 1, fmt.Sprintf("directory holds %d sets after the relist, want shop/a alone", sets)
	})
	eq(f.holders("EARLY1"))
	eq(f.holders("ANNA10"), "shop/a")
}

// TestSetDirectoryAhead: the directory may be ahead of the store; reads
// skip what the cache does not hold, and a late delete of an earlier set
// of the same name leaves the newer one.
func TestSetDirectoryAhead(t *testing.T) {
	f := newSetFixture(t, NewCache, nil, setupSets)
	d := f.cache.(*setCache).dir
	a := testCodeSet("shop", "a", "ua1", 1, "ANNA10")
	f.send(watch.Added, a)

	// Recorded by a transform whose event the store has not applied yet.
	d.record(testCodeSet("shop", "ahead", "ux", 1, "ANNA10"))
	if got := f.holders("ANNA10"); !slices.Equal(got, []string{"shop/a"}) {
		t.Errorf("a set the cache does not hold must be skipped: got %v", got)
	}

	// "a" deleted and recreated (new UID); the delete handler of the first
	// runs after the transform recorded the second.
	d.record(testCodeSet("shop", "a", "ua2", 1, "BOB15"))
	d.forget(toolscache.DeletedFinalStateUnknown{Key: "shop/a", Obj: a})
	var list trackingv1alpha1.PromoCodeSetList
	if err := f.cache.List(f.ctx, &list, foldedCodesIn{"BOB15"}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].UID != "ua1" {
		t.Errorf("the recreated set's codes must stay listed (read from the cache, still the first): %+v", list.Items)
	}
	d.forget(testCodeSet("shop", "a", "ua2", 1))
	if got := f.holders("BOB15"); len(got) != 0 {
		t.Errorf("after its own delete, the set must be gone: %v", got)
	}
}

// TestSetDirectoryReads: deep copies unless asked not to, and options the
// directory cannot answer, or a cache without it, fail.
func TestSetDirectoryReads(t *testing.T) {
	f := newSetFixture(t, NewCache, nil, setupSets)
	f.send(watch.Added, testCodeSet("shop", "a", "ua", 1, "ANNA10"))
	var cached, copied, shared trackingv1alpha1.PromoCodeSetList
	if err := f.cache.List(f.ctx, &cached, client.UnsafeDisableDeepCopy); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.List(f.ctx, &copied, client.MatchingFields{IndexSetFoldedCode: "ANNA10"}); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.List(f.ctx, &shared, foldedCodesIn{"ANNA10"}, client.UnsafeDisableDeepCopy); err != nil {
		t.Fatal(err)
	}
	if len(cached.Items) != 1 || len(copied.Items) != 1 || len(shared.Items) != 1 {
		t.Fatalf("want the one set each time: %d %d %d", len(cached.Items), len(copied.Items), len(shared.Items))
	}
	if &copied.Items[0].Spec.Codes[0] == &cached.Items[0].Spec.Codes[0] {
		t.Error("a List without UnsafeDisableDeepCopy must return a copy")
	}
	if &shared.Items[0].Spec.Codes[0] != &cached.Items[0].Spec.Codes[0] {
		t.Error("a List with UnsafeDisableDeepCopy must return the cache's object")
	}

	for name, opts := range map[string][]client.ListOption{
		"label selector":  {client.MatchingFields{IndexSetFoldedCode: "ANNA10"}, client.MatchingLabels{"a": "b"}},
		"two fields":      {client.MatchingFields{IndexSetFoldedCode: "ANNA10", "metadata.name": "a"}},
		"codes and field": {foldedCodesIn{"ANNA10"}, client.MatchingFields{IndexOfferRef: "shop/x"}},
	} {
		var list trackingv1alpha1.PromoCodeSetList
		if err := f.cache.List(f.ctx, &list, opts...); err == nil {
			t.Errorf("%s: want an error, got %d sets", name, len(list.Items))
		}
	}

	informer := func(ctx context.Context, c cache.Cache) error {
		_, err := c.GetInformer(ctx, &trackingv1alpha1.PromoCodeSet{})
		return err
	}
	plain := newSetFixture(t, cache.New, nil, informer)
	if err := SetupIndexes(plain.ctx, plain.cache); err == nil {
		t.Error("SetupIndexes on a cache not made by NewCache must fail")
	}
	if _, err := (Resolver{Reader: plain.cache}).SetsWithCodes(plain.ctx, []string{"ANNA10"}); err == nil {
		t.Error("SetsWithCodes on a cache without the directory must fail")
	}
	bare := newSetFixture(t, NewCache, nil, informer)
	if _, err := (Resolver{Reader: bare.cache}).SetsWithCodes(bare.ctx, []string{"ANNA10"}); err == nil {
		t.Error("SetsWithCodes before the directory is installed must fail")
	}
}

// TestSetDirectoryNeverBehindHandlers: whenever an event handler of the
// informer (as a controller's) sees a version of a set, lookups made from
// it already list the set by each of that version's codes and no longer by
// the codes it dropped; after a delete, not at all. Each event is checked
// before the next is sent, so the directory is at that very version.
func TestSetDirectoryNeverBehindHandlers(t *testing.T) {
	type verdict struct {
		event string
		err   error
	}
	verdicts := make(chan verdict, 100)
	var f *setFixture
	check := func(event string, cur, old *trackingv1alpha1.PromoCodeSet) {
		key := cur.Namespace + "/" + cur.Name
		var err error
		var have, dropped []string
		if event != "delete" {
			have = FoldedCodes(cur)
		}
		if old != nil {
			dropped = slices.DeleteFunc(FoldedCodes(old), func(c string) bool { return slices.Contains(have, c) })
		}
		for _, c := range append(have, dropped...) {
			var list trackingv1alpha1.PromoCodeSetList
			if lerr := f.cache.List(context.Background(), &list, client.MatchingFields{IndexSetFoldedCode: c}, client.UnsafeDisableDeepCopy); lerr != nil {
				err = lerr
				break
			}
			if listed := slices.Contains(names(list.Items), key); listed != slices.Contains(have, c) {
				err = fmt.Errorf("%s at generation %d: listed by %s is %v", key, cur.Generation, c, listed)
				break
			}
		}
		verdicts <- verdict{fmt.Sprintf("%s %s %d", event, key, cur.Generation), err}
	}
	f = newSetFixture(t, NewCache, nil, func(ctx context.Context, c cache.Cache) error {
		if err := SetupIndexes(ctx, c); err != nil {
			return err
		}
		inf, err := c.GetInformer(ctx, &trackingv1alpha1.PromoCodeSet{})
		if err != nil {
			return err
		}
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) { check("add", o.(*trackingv1alpha1.PromoCodeSet), nil) },
			UpdateFunc: func(o, n any) {
				check("update", n.(*trackingv1alpha1.PromoCodeSet), o.(*trackingv1alpha1.PromoCodeSet))
			},
			DeleteFunc: func(o any) {
				if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = t.Obj
				}
				s := o.(*trackingv1alpha1.PromoCodeSet)
				check("delete", s, s)
			},
		})
		return err
	})
	steps := []struct {
		typ watch.EventType
		set *trackingv1alpha1.PromoCodeSet
	}{
		{watch.Added, testCodeSet("shop", "a", "ua", 1, "A1", "B2", "C3")},
		{watch.Added, testCodeSet("shop", "b", "ub", 1, "B2", "D4")},
		{watch.Modified, testCodeSet("shop", "a", "ua", 2, "A1", "E5")},
		{watch.Modified, testCodeSet("shop", "b", "ub", 2, "A1")},
		{watch.Deleted, testCodeSet("shop", "a", "ua", 2, "A1", "E5")},
		{watch.Added, testCodeSet("shop", "a", "ua2", 1, "E5", "F6")},
		{watch.Modified, testCodeSet("shop", "a", "ua2", 2, "G7")},
		{watch.Deleted, testCodeSet("shop", "b", "ub", 2, "A1")},
	}
	for _, st := range steps {
		f.send(st.typ, st.set)
		select {
		case v := <-verdicts:
			if v.err != nil {
				t.Errorf("%s: %v", v.event, v.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no handler call for %s %s", st.typ, st.set.Name)
		}
	}
}

// BenchmarkSetCodeIndexMemory measures, in one run, the live heap per set
// entry of a cache holding 40 PromoCodeSets of 5,000 entries (codes as the
// catalogue benchmark writes them, "C0000042"): the objects alone, then what
// finding the sets by folded code adds, by the multi-valued client-go index
// controller-runtime's IndexField builds (the former IndexSetFoldedCode) and
// by the folded-code directory of NewCache. Both go through the real
// informer (list, transform, store):
//
//	go test -run '^$' -bench SetCodeIndexMemory -benchtime 1x ./internal/kube
func BenchmarkSetCodeIndexMemory(b *testing.B) {
	const nSets, perSet = 40, 5000
	entries := float64(nSets * perSet)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// live is the heap a synced cache made by newCache and indexed by setup holds.
	live := func(newCache cache.NewCacheFunc, setup func(context.Context, cache.Cache) error) float64 {
		before := heap()
		sets := make([]*trackingv1alpha1.PromoCodeSet, nSets)
		for i := range sets {
			s := testCodeSet("bench", fmt.Sprintf("set-%d", i), fmt.Sprintf("uid-%d", i), 1)
			s.Spec.OfferRef.Name = "offer"
			s.Spec.Codes = make([]trackingv1alpha1.PromoCodeSetEntry, perSet)
			for j := range s.Spec.Codes {
				s.Spec.Codes[j] = trackingv1alpha1.PromoCodeSetEntry{Code: fmt.Sprintf("C%07d", i*perSet+j), AffiliateID: int64(500_000 + i)}
			}
			sets[i] = s
		}
		f := newSetFixture(b, newCache, sets, setup)
		var list trackingv1alpha1.PromoCodeSetList
		if err := f.cache.List(f.ctx, &list, client.UnsafeDisableDeepCopy); err != nil || len(list.Items) != nSets {
			b.Fatalf("cache holds %d sets (%v), want %d", len(list.Items), err, nSets)
		}
		f.api.mu.Lock()
		f.api.sets = nil // the cache's copies alone
		f.api.mu.Unlock()
		after := heap()
		runtime.KeepAlive(f.cache)
		f.stop()
		return float64(after) - float64(before)
	}
	informer := func(ctx context.Context, c cache.Cache) error {
		_, err := c.GetInformer(ctx, &trackingv1alpha1.PromoCodeSet{})
		return err
	}
	clientGoIndex := func(ctx context.Context, c cache.Cache) error {
		return c.IndexField(ctx, &trackingv1alpha1.PromoCodeSet{}, IndexSetFoldedCode, func(o client.Object) []string {
			return FoldedCodes(o.(*trackingv1alpha1.PromoCodeSet))
		})
	}
	directory := func(ctx context.Context, c cache.Cache) error {
		return c.IndexField(ctx, &trackingv1alpha1.PromoCodeSet{}, IndexSetFoldedCode, nil)
	}
	for b.Loop() {
		objects := live(cache.New, informer)
		index := live(cache.New, clientGoIndex) - objects
		dir := live(NewCache, directory) - objects
		b.ReportMetric(objects/entries, "B/entry-objects")
		b.ReportMetric(index/entries, "B/entry-client-go-index")
		b.ReportMetric(dir/entries, "B/entry-directory")
	}
}
