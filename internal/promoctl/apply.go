package promoctl

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// existingSet is what Apply keeps of a set already in the cluster.
type existingSet struct {
	name      string
	namespace string
	uid       types.UID
	equal     bool   // its spec is the planned one
	removes   bool   // it holds a code the plan does not put in it
	has       []bool // per planned entry: the set already holds its code
	kept      int    // how many planned entries it already holds
}

func summarize(s *trackingv1alpha1.PromoCodeSet, want *trackingv1alpha1.PromoCodeSet) *existingSet {
	e := &existingSet{name: s.Name, namespace: s.Namespace, uid: s.UID}
	if want == nil {
		return e
	}
	e.equal = apiequality.Semantic.DeepEqual(s.Spec, want.Spec)
	idx := make(map[string]int, len(want.Spec.Codes))
	for i, en := range want.Spec.Codes {
		idx[routing.Fold(en.Code)] = i
	}
	e.has = make([]bool, len(want.Spec.Codes))
	for _, en := range s.Spec.Codes {
		if i, ok := idx[routing.Fold(en.Code)]; ok {
			e.has[i] = true
			e.kept++
		} else {
			e.removes = true
		}
	}
	return e
}

// setApply is the server-side apply body of a set: exactly the fields the
// plugin owns (labels, offerRef, codes), no status, no creationTimestamp.
type setApply struct {
	APIVersion string                             `json:"apiVersion"`
	Kind       string                             `json:"kind"`
	Metadata   applyMeta                          `json:"metadata"`
	Spec       *trackingv1alpha1.PromoCodeSetSpec `json:"spec,omitempty"`
}

type applyMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
}

func (s *setApply) IsApplyConfiguration()  {}
func (s *setApply) GetName() *string       { return &s.Metadata.Name }
func (s *setApply) GetNamespace() *string  { return &s.Metadata.Namespace }
func (s *setApply) GetKind() *string       { return &s.Kind }
func (s *setApply) GetAPIVersion() *string { return &s.APIVersion }

// ApplyBody is the object server-side apply receives for a planned set (and
// what --dry-run=client prints).
func ApplyBody(set *trackingv1alpha1.PromoCodeSet) *setApply {
	spec := set.Spec
	return &setApply{
		APIVersion: trackingv1alpha1.GroupVersion.String(), Kind: "PromoCodeSet",
		Metadata: applyMeta{Name: set.Name, Namespace: set.Namespace, Labels: set.Labels},
		Spec:     &spec,
	}
}

// Importer applies a plan to the cluster.
type Importer struct {
	Client client.Client
	// Out receives one line per set (kubectl style) and a summary.
	Out io.Writer
	// Progress, when non-nil, receives a progress bar (a terminal).
	Progress io.Writer
	// Workers is how many sets are applied at once.
	Workers int
	// DryRunServer sends every write with dryRun=All.
	DryRunServer bool

	mu sync.Mutex
}

// Result counts what an import did.
type Result struct {
	Created, Configured, Unchanged, Deleted int
	Codes                                   int
}

func (r Result) String() string {
	return fmt.Sprintf("%d codes in %s: %d created, %d configured, %d unchanged, %d deleted",
		r.Codes, plural(r.Created+r.Configured+r.Unchanged, "set"), r.Created, r.Configured, r.Unchanged, r.Deleted)
}

// ListImport returns the sets carrying the import label prefix in namespace, by name.
func ListImport(ctx context.Context, c client.Client, namespace, prefix string) ([]trackingv1alpha1.PromoCodeSet, error) {
	var out []trackingv1alpha1.PromoCodeSet
	err := listSets(ctx, c, func(s *trackingv1alpha1.PromoCodeSet) { out = append(out, *s) },
		client.InNamespace(namespace), client.MatchingLabels{ImportLabel: prefix})
	slices.SortFunc(out, func(a, b trackingv1alpha1.PromoCodeSet) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// listSets lists PromoCodeSets page by page, 10 sets a page (a set of 5,000
// entries is up to a megabyte of JSON). The next page is fetched while each
// is handed to each: the API server encodes one while this decodes and reads
// the last (a preflight against a million codes reads some 30 pages).
func listSets(ctx context.Context, c client.Client, each func(*trackingv1alpha1.PromoCodeSet), opts ...client.ListOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan *trackingv1alpha1.PromoCodeSetList, 1)
	errc := make(chan error, 1)
	go func() {
		defer close(pages)
		cont := ""
		for {
			l := &trackingv1alpha1.PromoCodeSetList{}
			if err := c.List(ctx, l, append(opts, client.Limit(10), client.Continue(cont))...); err != nil {
				errc <- fmt.Errorf("listing PromoCodeSets: %w", err)
				return
			}
			select {
			case pages <- l:
			case <-ctx.Done():
				return
			}
			if cont = l.Continue; cont == "" {
				return
			}
		}
	}()
	for l := range pages {
		for i := range l.Items {
			each(&l.Items[i])
		}
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Apply makes the cluster hold exactly the plan's sets for its prefix.
//
// Order of operations: a code that moves from one set of the import to
// another (only when the number of sets changes) would, if the new set were
// written first, be claimed twice for a moment — same affiliate, same offer:
// the webhook refuses the younger as DuplicateCode. So phase 1 first removes
// from every existing set the codes it loses (deleting sets that are no
// longer planned, or whose every code leaves), and phase 2 then applies the
// full planned sets. Between the phases a moving code is briefly unclaimed,
// never claimed twice. Sets whose spec already equals the plan are not written.
func (im *Importer) Apply(ctx context.Context, p *Plan) (Result, error) {
	res := Result{}
	for _, s := range p.Sets {
		res.Codes += len(s.Spec.Codes)
	}
	planned := map[string]*trackingv1alpha1.PromoCodeSet{}
	for _, s := range p.Sets {
		planned[s.Name] = s
	}
	// The existing sets are read page by page and summarized against the
	// plan, so a million existing entries are never held at once.
	have := map[string]*existingSet{}
	var mismatch error
	err := listSets(ctx, im.Client, func(s *trackingv1alpha1.PromoCodeSet) {
		if s.Spec.OfferRef.Name != p.Offer && mismatch == nil {
			mismatch = fmt.Errorf("PromoCodeSet %s/%s of import %q is for offer %q, not %q (offerRef is immutable): "+
				"use another --set-prefix, or delete the sets labelled %s=%s first; nothing applied",
				s.Namespace, s.Name, p.Prefix, s.Spec.OfferRef.Name, p.Offer, ImportLabel, p.Prefix)
		}
		have[s.Name] = summarize(s, planned[s.Name])
	}, client.InNamespace(p.Namespace), client.MatchingLabels{ImportLabel: p.Prefix})
	if err != nil {
		return res, err
	}
	if mismatch != nil {
		return res, mismatch
	}
	if err := im.checkForeign(ctx, p, have); err != nil {
		return res, err
	}

	// Phase 1: shrink and delete.
	type step struct {
		name string
		do   func(context.Context) error
	}
	var phase1 []step
	for _, name := range slices.Sorted(maps.Keys(have)) {
		old := have[name]
		want, ok := planned[name]
		switch {
		case !ok:
			phase1 = append(phase1, step{name, im.deleteStep(old, false, &res)})
		case !old.removes:
		case old.kept == 0:
			phase1 = append(phase1, step{name, im.deleteStep(old, true, nil)})
		default:
			shrunk := want.DeepCopy()
			shrunk.Spec.Codes = shrunk.Spec.Codes[:0]
			for i, e := range want.Spec.Codes {
				if old.has[i] {
					shrunk.Spec.Codes = append(shrunk.Spec.Codes, e)
				}
			}
			phase1 = append(phase1, step{name, func(ctx context.Context) error { return im.apply(ctx, shrunk) }})
		}
	}

	var phase2 []step
	for _, s := range p.Sets {
		old, ok := have[s.Name]
		if ok && old.equal {
			im.record(&res.Unchanged, s.Name, "unchanged")
			continue
		}
		created := !ok || (old.removes && old.kept == 0) // deleted in phase 1
		phase2 = append(phase2, step{s.Name, func(ctx context.Context) error {
			if err := im.applyAfterMoves(ctx, s, len(phase1) > 0); err != nil {
				return err
			}
			if created {
				im.record(&res.Created, s.Name, "created")
			} else {
				im.record(&res.Configured, s.Name, "configured")
			}
			return nil
		}})
	}

	bar := newProgress(im.Progress, len(phase1)+len(phase2))
	defer bar.done()
	for i, phase := range [][]step{phase1, phase2} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(1, im.Workers))
		for _, st := range phase {
			g.Go(func() error {
				if err := st.do(gctx); err != nil {
					return fmt.Errorf("PromoCodeSet %s/%s (phase %d of 2): %w", p.Namespace, st.name, i+1, err)
				}
				bar.step()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// record counts one outcome and prints its line; steps run concurrently.
func (im *Importer) record(n *int, name, verb string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	*n++
	fmt.Fprintf(im.Out, "promocodeset.tracking.promocodes.dev/%s %s%s\n", name, verb, im.suffix())
}

func (im *Importer) suffix() string {
	if im.DryRunServer {
		return " (server dry run)"
	}
	return ""
}

// checkForeign refuses to take over a set of the planned name that is not
// part of this import (made by hand, or by another import).
func (im *Importer) checkForeign(ctx context.Context, p *Plan, have map[string]*existingSet) error {
	var l metav1.PartialObjectMetadataList
	l.SetGroupVersionKind(trackingv1alpha1.GroupVersion.WithKind("PromoCodeSetList"))
	if err := im.Client.List(ctx, &l, client.InNamespace(p.Namespace)); err != nil {
		return fmt.Errorf("listing PromoCodeSets in %s: %w", p.Namespace, err)
	}
	var foreign []string
	for _, m := range l.Items {
		if _, ours := have[m.Name]; ours {
			continue
		}
		for _, s := range p.Sets {
			if s.Name == m.Name {
				foreign = append(foreign, m.Name)
			}
		}
	}
	if len(foreign) > 0 {
		return fmt.Errorf("PromoCodeSet(s) %s already exist in %s without label %s=%s: not part of this import; "+
			"use another --set-prefix; nothing applied", strings.Join(foreign, ", "), p.Namespace, ImportLabel, p.Prefix)
	}
	return nil
}

// movedRetry bounds how long phase 2 retries a refusal after phase 1 moved codes.
var movedRetry = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 12, Cap: 5 * time.Second}

// applyAfterMoves applies a set; when phase 1 removed codes, a refusal by the
// admission webhook is retried for about half a minute: the webhook judges
// from the manager's cache, which may not have seen phase 1's writes yet and
// still count a moved code in its old set. A refusal that persists (the code
// is held by another affiliate) is returned.
func (im *Importer) applyAfterMoves(ctx context.Context, s *trackingv1alpha1.PromoCodeSet, moved bool) error {
	if !moved {
		return im.apply(ctx, s)
	}
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, movedRetry, func(ctx context.Context) (bool, error) {
		last = im.apply(ctx, s)
		switch {
		case last == nil:
			return true, nil
		case apierrors.IsForbidden(last):
			return false, nil
		default:
			return false, last
		}
	})
	if wait.Interrupted(err) && last != nil {
		return last
	}
	return err
}

func (im *Importer) apply(ctx context.Context, s *trackingv1alpha1.PromoCodeSet) error {
	opts := []client.ApplyOption{client.FieldOwner(FieldManager), client.ForceOwnership}
	if im.DryRunServer {
		opts = append(opts, client.DryRunAll)
	}
	return im.Client.Apply(ctx, ApplyBody(s), opts...)
}

// deleteStep deletes a set (guarded by its UID). When wait is set it returns
// once the set is gone, so phase 2 can create it again.
func (im *Importer) deleteStep(s *existingSet, waitGone bool, res *Result) func(context.Context) error {
	return func(ctx context.Context) error {
		obj := &trackingv1alpha1.PromoCodeSet{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace}}
		opts := []client.DeleteOption{client.Preconditions{UID: &s.uid}}
		if im.DryRunServer {
			opts = append(opts, client.DryRunAll)
		}
		if err := im.Client.Delete(ctx, obj, opts...); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if res != nil {
			im.record(&res.Deleted, s.name, "deleted")
		}
		if !waitGone || im.DryRunServer {
			return nil
		}
		return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			err := im.Client.Get(ctx, client.ObjectKeyFromObject(obj), &trackingv1alpha1.PromoCodeSet{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, client.IgnoreNotFound(err)
		})
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
