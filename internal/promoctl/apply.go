package promoctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

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
	return fmt.Sprintf("%d codes in %d sets: %d created, %d configured, %d unchanged, %d deleted",
		r.Codes, r.Created+r.Configured+r.Unchanged, r.Created, r.Configured, r.Unchanged, r.Deleted)
}

// ListImport returns the sets carrying the import label prefix in namespace, by name.
func ListImport(ctx context.Context, c client.Client, namespace, prefix string) ([]trackingv1alpha1.PromoCodeSet, error) {
	var out []trackingv1alpha1.PromoCodeSet
	err := listSets(ctx, c, func(s *trackingv1alpha1.PromoCodeSet) { out = append(out, *s) },
		client.InNamespace(namespace), client.MatchingLabels{ImportLabel: prefix})
	slices.SortFunc(out, func(a, b trackingv1alpha1.PromoCodeSet) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// listSets lists PromoCodeSets page by page (a page of big sets is megabytes).
func listSets(ctx context.Context, c client.Client, each func(*trackingv1alpha1.PromoCodeSet), opts ...client.ListOption) error {
	cont := ""
	for {
		var l trackingv1alpha1.PromoCodeSetList
		if err := c.List(ctx, &l, append(opts, client.Limit(50), client.Continue(cont))...); err != nil {
			return fmt.Errorf("listing PromoCodeSets: %w", err)
		}
		for i := range l.Items {
			each(&l.Items[i])
		}
		if cont = l.Continue; cont == "" {
			return nil
		}
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
	existing, err := ListImport(ctx, im.Client, p.Namespace, p.Prefix)
	if err != nil {
		return res, err
	}
	have := map[string]*trackingv1alpha1.PromoCodeSet{}
	for i := range existing {
		s := &existing[i]
		if s.Spec.OfferRef.Name != p.Offer {
			return res, fmt.Errorf("PromoCodeSet %s/%s of import %q is for offer %q, not %q (offerRef is immutable): "+
				"use another --set-prefix, or delete the sets labelled %s=%s first; nothing applied",
				s.Namespace, s.Name, p.Prefix, s.Spec.OfferRef.Name, p.Offer, ImportLabel, p.Prefix)
		}
		have[s.Name] = s
	}
	if err := im.checkForeign(ctx, p, have); err != nil {
		return res, err
	}

	// Phase 1: shrink and delete.
	type step struct {
		name string
		do   func(context.Context) error
	}
	planned := map[string]*trackingv1alpha1.PromoCodeSet{}
	for _, s := range p.Sets {
		planned[s.Name] = s
	}
	var phase1 []step
	recreated := map[string]bool{}
	touched := map[string]bool{}
	for _, old := range existing {
		want, ok := planned[old.Name]
		if !ok {
			phase1 = append(phase1, step{old.Name, im.deleteStep(old, false, &res)})
			continue
		}
		wantFolded := map[string]bool{}
		for _, e := range want.Spec.Codes {
			wantFolded[routing.Fold(e.Code)] = true
		}
		keep := map[string]bool{}
		removed := false
		for _, e := range old.Spec.Codes {
			f := routing.Fold(e.Code)
			if wantFolded[f] {
				keep[f] = true
			} else {
				removed = true
			}
		}
		if !removed {
			continue
		}
		touched[old.Name] = true
		if len(keep) == 0 {
			recreated[old.Name] = true
			phase1 = append(phase1, step{old.Name, im.deleteStep(old, true, nil)})
			continue
		}
		shrunk := want.DeepCopy()
		shrunk.Spec.Codes = slices.DeleteFunc(shrunk.Spec.Codes, func(e trackingv1alpha1.PromoCodeSetEntry) bool { return !keep[routing.Fold(e.Code)] })
		phase1 = append(phase1, step{old.Name, func(ctx context.Context) error { return im.apply(ctx, shrunk) }})
	}

	var phase2 []step
	for _, s := range p.Sets {
		old, ok := have[s.Name]
		if ok && !touched[s.Name] && apiequality.Semantic.DeepEqual(old.Spec, s.Spec) && old.Labels[ImportLabel] == p.Prefix {
			im.record(&res.Unchanged, s.Name, "unchanged")
			continue
		}
		created := !ok || recreated[s.Name]
		phase2 = append(phase2, step{s.Name, func(ctx context.Context) error {
			if err := im.apply(ctx, s); err != nil {
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
func (im *Importer) checkForeign(ctx context.Context, p *Plan, have map[string]*trackingv1alpha1.PromoCodeSet) error {
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

func (im *Importer) apply(ctx context.Context, s *trackingv1alpha1.PromoCodeSet) error {
	opts := []client.ApplyOption{client.FieldOwner(FieldManager), client.ForceOwnership}
	if im.DryRunServer {
		opts = append(opts, client.DryRunAll)
	}
	return im.Client.Apply(ctx, ApplyBody(s), opts...)
}

// deleteStep deletes a set (guarded by its UID). When wait is set it returns
// once the set is gone, so phase 2 can create it again.
func (im *Importer) deleteStep(s trackingv1alpha1.PromoCodeSet, waitGone bool, res *Result) func(context.Context) error {
	return func(ctx context.Context) error {
		obj := &trackingv1alpha1.PromoCodeSet{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}}
		opts := []client.DeleteOption{client.Preconditions{UID: &s.UID}}
		if im.DryRunServer {
			opts = append(opts, client.DryRunAll)
		}
		if err := im.Client.Delete(ctx, obj, opts...); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if res != nil {
			im.record(&res.Deleted, s.Name, "deleted")
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
