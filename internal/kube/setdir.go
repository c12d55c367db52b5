package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// NewCache is the cache.NewCacheFunc of every cache SetupIndexes indexes
// (manager.Options.NewCache; the portal calls it directly). It is
// controller-runtime's cache, except that PromoCodeSets are found by folded
// code through a compact directory instead of a client-go index (see
// setDirectory): IndexField(IndexSetFoldedCode) installs the directory, and
// List of PromoCodeSets by IndexSetFoldedCode answers from it. Everything
// else, including the manager's client reads, goes to the cache as before.
//
// The directory's transform wraps every transform opts sets
// (DefaultTransform, ByObject and per-namespace ones), so whichever
// controller-runtime picks for PromoCodeSets records them; ByObject is not
// used for that, because it would make creating the cache need the CRD's
// REST mapping.
func NewCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	dir := newSetDirectory()
	c, err := cache.New(cfg, withSetTransform(opts, dir.transform))
	if err != nil {
		return nil, err
	}
	return &setCache{Cache: c, dir: dir}, nil
}

// withSetTransform returns opts with every transform that may apply to
// PromoCodeSets wrapped by wrap; the maps are copied, not changed.
func withSetTransform(opts cache.Options, wrap func(toolscache.TransformFunc) toolscache.TransformFunc) cache.Options {
	opts.DefaultTransform = wrap(opts.DefaultTransform)
	wrapNamespaces := func(in map[string]cache.Config) map[string]cache.Config {
		if in == nil {
			return nil
		}
		out := maps.Clone(in)
		for ns, c := range out {
			if c.Transform != nil {
				c.Transform = wrap(c.Transform)
				out[ns] = c
			}
		}
		return out
	}
	opts.DefaultNamespaces = wrapNamespaces(opts.DefaultNamespaces)
	if opts.ByObject != nil {
		byObject := maps.Clone(opts.ByObject)
		for obj, bo := range byObject {
			if _, ok := obj.(*trackingv1alpha1.PromoCodeSet); !ok {
				continue
			}
			if bo.Transform != nil {
				bo.Transform = wrap(bo.Transform)
			}
			bo.Namespaces = wrapNamespaces(bo.Namespaces)
			byObject[obj] = bo
		}
		opts.ByObject = byObject
	}
	return opts
}

// setDirectory maps each folded code to the PromoCodeSets with an entry on
// it: what the multi-valued client-go index IndexSetFoldedCode was, at 35-56
// B per entry instead of 630-670 (one map entry per distinct code, no
// per-value map, no namespaced copy; BenchmarkSetCodeIndexMemory).
//
// Readers rely on this: once an event handler has seen a version of a set,
// every lookup sees that version's codes. The directory keeps it so:
//
//   - It records a set in the informer's transform, which client-go
//     (RealFIFO) calls when the event is queued, before the store is
//     updated and before any handler is told: on add, update, relist
//     (ReplacedAll, and each object of a watch-list) and on the object of a
//     Deleted event. It replaces what it held for the set: codes an update
//     dropped go. So the directory is at the version a handler sees, or newer.
//   - It forgets a set in a delete handler (tombstones included), after the
//     store dropped it, and only the version it deleted (same UID): a set
//     recreated under the name, recorded meanwhile, stays. The transform
//     cannot tell a Deleted event from an update, and does not run for the
//     tombstones of a relist, hence the handler.
//   - A lookup takes the directory's sets as candidates and reads each from
//     the cache: one the cache no longer holds is skipped, and the entries
//     callers check are the cache's.
//
// So a lookup never misses what a handler has seen. It may be ahead: a set
// the store is still to hold is skipped, and a code the next version drops
// is already gone, which the handler of that version, when it fires, reports
// as changed. A set that only an abandoned watch-list attempt showed stays a
// record (skipped by reads) until a set of that name comes again.
type setDirectory struct {
	mu    sync.RWMutex
	codes map[string]*setRecord   // folded code → its holder, or several
	multi map[string][]*setRecord // the holders of codes several sets share
	sets  map[client.ObjectKey]*setRecord
}

// setRecord is one set of the directory: the newest version the transform
// saw, which is the object the store holds or is about to (its code strings
// are shared with the map's keys when folding left them unchanged).
type setRecord struct {
	set *trackingv1alpha1.PromoCodeSet
}

// several marks, in setDirectory.codes, a code held by several sets.
var several = &setRecord{}

func newSetDirectory() *setDirectory {
	return &setDirectory{codes: map[string]*setRecord{}, multi: map[string][]*setRecord{}, sets: map[client.ObjectKey]*setRecord{}}
}

// transform wraps a cache transform: PromoCodeSets it returns are recorded.
func (d *setDirectory) transform(base toolscache.TransformFunc) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if base != nil {
			var err error
			if obj, err = base(obj); err != nil {
				return obj, err
			}
		}
		if s, ok := obj.(*trackingv1alpha1.PromoCodeSet); ok {
			d.record(s)
		}
		return obj, nil
	}
}

// sameSpec: a version of the same object with the same generation (a status
// or metadata write) has the same entries.
func sameSpec(a, b *trackingv1alpha1.PromoCodeSet) bool {
	return a.UID == b.UID && a.Generation == b.Generation && a.Generation != 0
}

// record makes s the directory's version of its set. Folding happens outside
// the lock; the write lock covers the map updates only.
func (d *setDirectory) record(s *trackingv1alpha1.PromoCodeSet) {
	key := client.ObjectKeyFromObject(s)
	// cur and was: the folded codes of s and of old, unless they are the same.
	fold := func(old *trackingv1alpha1.PromoCodeSet) (cur, was []string) {
		if old != nil && sameSpec(old, s) {
			return nil, nil
		}
		if old != nil {
			was = FoldedCodes(old)
		}
		return FoldedCodes(s), was
	}
	d.mu.RLock()
	var old *trackingv1alpha1.PromoCodeSet
	if r := d.sets[key]; r != nil {
		old = r.set
	}
	d.mu.RUnlock()
	cur, was := fold(old)

	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.sets[key]
	if r == nil {
		r = &setRecord{}
		d.sets[key] = r
	}
	if r.set != old { // the delete handler ran meanwhile
		old = r.set
		cur, was = fold(old)
	}
	r.set = s
	for _, f := range cur {
		d.add(f, r)
	}
	if len(was) > 0 {
		keep := make(map[string]struct{}, len(cur))
		for _, f := range cur {
			keep[f] = struct{}{}
		}
		for _, f := range was {
			if _, ok := keep[f]; !ok {
				d.remove(f, r)
			}
		}
	}
}

// forget is the informer's delete handler: the set leaves the directory if
// the directory still holds the version deleted.
func (d *setDirectory) forget(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*trackingv1alpha1.PromoCodeSet)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(s)
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.sets[key]
	if r == nil || r.set.UID != s.UID {
		return
	}
	for _, f := range FoldedCodes(r.set) {
		d.remove(f, r)
	}
	delete(d.sets, key)
}

func (d *setDirectory) add(f string, r *setRecord) {
	switch h, ok := d.codes[f]; {
	case !ok:
		d.codes[f] = r
	case h == r:
	case h == several:
		if !slices.Contains(d.multi[f], r) {
			d.multi[f] = append(d.multi[f], r)
		}
	default:
		d.codes[f] = several
		d.multi[f] = []*setRecord{h, r}
	}
}

func (d *setDirectory) remove(f string, r *setRecord) {
	switch h := d.codes[f]; h {
	case r:
		delete(d.codes, f)
	case several:
		hs := slices.DeleteFunc(d.multi[f], func(x *setRecord) bool { return x == r })
		if len(hs) == 1 {
			d.codes[f] = hs[0]
			delete(d.multi, f)
		} else {
			d.multi[f] = hs
		}
	}
}

// holders returns the keys of the sets the directory lists for any of the
// folded codes, in namespace (all when ""), sorted, under one read lock.
func (d *setDirectory) holders(folded []string, namespace string) []client.ObjectKey {
	d.mu.RLock()
	seen := map[*setRecord]struct{}{}
	for _, f := range folded {
		switch h := d.codes[f]; h {
		case nil:
		case several:
			for _, r := range d.multi[f] {
				seen[r] = struct{}{}
			}
		default:
			seen[h] = struct{}{}
		}
	}
	keys := make([]client.ObjectKey, 0, len(seen))
	for r := range seen {
		if namespace == "" || r.set.Namespace == namespace {
			keys = append(keys, client.ObjectKeyFromObject(r.set))
		}
	}
	d.mu.RUnlock()
	slices.SortFunc(keys, func(a, b client.ObjectKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return keys
}

// setCache is the cache NewCache returns.
type setCache struct {
	cache.Cache
	dir *setDirectory

	mu      sync.Mutex  // serialises indexSetCodes
	indexed atomic.Bool // the delete handler is installed
}

// IndexField installs the folded-code directory for IndexSetFoldedCode on
// PromoCodeSets (extractValue is not used: the directory folds the codes
// itself) and passes any other index on to the cache.
func (c *setCache) IndexField(ctx context.Context, obj client.Object, field string, extractValue client.IndexerFunc) error {
	if _, ok := obj.(*trackingv1alpha1.PromoCodeSet); ok && field == IndexSetFoldedCode {
		return c.indexSetCodes(ctx)
	}
	return c.Cache.IndexField(ctx, obj, field, extractValue)
}

// indexSetCodes installs the directory's delete handler on the PromoCodeSet
// informer. Call it before the cache starts, as any index: deletions before
// it would leave records behind (reads skip them).
func (c *setCache) indexSetCodes(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.indexed.Load() {
		return fmt.Errorf("indexer conflict: %s is already indexed", IndexSetFoldedCode)
	}
	inf, err := c.GetInformer(ctx, &trackingv1alpha1.PromoCodeSet{}, cache.BlockUntilSynced(false))
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: c.dir.forget}); err != nil {
		return err
	}
	c.indexed.Store(true)
	return nil
}

// List answers a List of PromoCodeSets by IndexSetFoldedCode (one code, by
// client.MatchingFields, or several, by foldedCodesIn) from the directory:
// the candidates, read from the cache, without the ones it no longer holds.
// It honours client.InNamespace and client.UnsafeDisableDeepCopy, and
// refuses other options. Every other List goes to the cache.
func (c *setCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	sets, ok := list.(*trackingv1alpha1.PromoCodeSetList)
	if !ok {
		return c.Cache.List(ctx, list, opts...)
	}
	folded, lo, err := directoryQuery(opts)
	if err != nil || folded == nil {
		if err != nil {
			return fmt.Errorf("listing PromoCodeSets by %s: %w", IndexSetFoldedCode, err)
		}
		return c.Cache.List(ctx, list, opts...)
	}
	if !c.indexed.Load() {
		return fmt.Errorf("listing PromoCodeSets by %s: the folded-code directory is not installed (kube.SetupIndexes)", IndexSetFoldedCode)
	}
	var getOpts []client.GetOption
	if lo.UnsafeDisableDeepCopy != nil && *lo.UnsafeDisableDeepCopy {
		getOpts = append(getOpts, client.UnsafeDisableDeepCopy)
	}
	keys := c.dir.holders(folded, lo.Namespace)
	items := make([]trackingv1alpha1.PromoCodeSet, 0, len(keys))
	for _, k := range keys {
		var s trackingv1alpha1.PromoCodeSet
		if err := c.Get(ctx, k, &s, getOpts...); err != nil {
			if apierrors.IsNotFound(err) {
				continue // deleted, or recorded ahead of the store
			}
			return err
		}
		items = append(items, s)
	}
	sets.Items = items
	return nil
}

// directoryQuery returns the folded codes a PromoCodeSet List asks the
// directory for (nil: not a directory query) and the options applied.
func directoryQuery(opts []client.ListOption) ([]string, client.ListOptions, error) {
	var lo client.ListOptions
	lo.ApplyOptions(opts)
	var folded []string
	byFields := false
	for _, o := range opts {
		switch q := o.(type) {
		case foldedCodesIn:
			folded = append([]string{}, q...)
		case client.MatchingFields, client.MatchingFieldsSelector:
			byFields = true
		}
	}
	var reqs fields.Requirements
	if lo.FieldSelector != nil {
		reqs = lo.FieldSelector.Requirements()
	}
	onIndex := slices.ContainsFunc(reqs, func(r fields.Requirement) bool { return r.Field == IndexSetFoldedCode })
	switch {
	case folded == nil && !onIndex:
		return nil, lo, nil
	case folded != nil && byFields:
		return nil, lo, errors.New("a field selector and the codes of SetsWithCodes both given")
	case len(reqs) != 1 || !onIndex || (reqs[0].Operator != selection.Equals && reqs[0].Operator != selection.DoubleEquals):
		return nil, lo, fmt.Errorf("the directory answers one exact %s match alone, got field selector %q", IndexSetFoldedCode, lo.FieldSelector)
	case lo.LabelSelector != nil || lo.Limit != 0 || lo.Continue != "":
		return nil, lo, errors.New("the directory answers client.InNamespace and client.UnsafeDisableDeepCopy only")
	}
	if folded == nil {
		folded = []string{reqs[0].Value}
	}
	return folded, lo, nil
}

// foldedCodesIn is the List option of Resolver.SetsWithCodes: the sets the
// directory lists for any of the codes, in one lookup. Only a cache made by
// NewCache knows it; to any other reader it is a field selector on an index
// nobody registers (an empty IndexSetFoldedCode), which fails the List.
type foldedCodesIn []string

func (q foldedCodesIn) ApplyToList(o *client.ListOptions) {
	o.FieldSelector = fields.OneTermEqualSelector(IndexSetFoldedCode, "")
}
