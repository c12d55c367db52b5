package routeserver

import (
	"context"
	"sync"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// setState is the route server's per-set compiled state: for each
// PromoCodeSet, the signature of each folded code it claimed when last seen
// (kube.CodeSignatures). An edit marks only the codes whose signature moved —
// editing one entry of a 5,000-entry set recompiles and publishes that one
// code group — and a deletion marks the codes the set held, even when the
// informer hands over a stale final state.
type setState struct {
	mu   sync.Mutex
	sigs map[routing.Ref]map[string]uint64
}

// update records set's signatures (nil: deleted) and returns the folded
// codes whose routing may have changed.
func (st *setState) update(ref routing.Ref, set *trackingv1alpha1.PromoCodeSet) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sigs == nil {
		st.sigs = map[routing.Ref]map[string]uint64{}
	}
	cur := kube.CodeSignatures(set)
	changed := kube.ChangedCodes(st.sigs[ref], cur)
	if set == nil {
		delete(st.sigs, ref)
	} else {
		st.sigs[ref] = cur
	}
	return changed
}

// watchSets marks the code groups PromoCodeSet events touch. Status writes
// and other updates that leave the generation alone mark nothing.
func (s *Server) watchSets(ctx context.Context) error {
	inf, err := s.Cache.GetInformer(ctx, &trackingv1alpha1.PromoCodeSet{})
	if err != nil {
		return err
	}
	markCodes := func(codes []string) {
		if len(codes) == 0 {
			return
		}
		s.mark(func(d *dirtySet) {
			for _, f := range codes {
				d.codes[f] = struct{}{}
			}
		})
	}
	onSet := func(obj any) {
		if set, ok := unwrap(obj).(*trackingv1alpha1.PromoCodeSet); ok {
			markCodes(s.sets.update(kube.RefOf(set), set))
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: onSet,
		UpdateFunc: func(old, cur any) {
			if kube.Changed(old, cur) {
				onSet(cur)
			}
		},
		DeleteFunc: func(obj any) {
			if set, ok := unwrap(obj).(*trackingv1alpha1.PromoCodeSet); ok {
				markCodes(s.sets.update(kube.RefOf(set), nil))
			}
		},
	})
	return err
}

// setClaims lists every valid entry of every PromoCodeSet in the cache, for
// the first full build.
func (s *Server) setClaims(ctx context.Context) ([]*routing.Claim, error) {
	var sets trackingv1alpha1.PromoCodeSetList
	if err := s.Cache.List(ctx, &sets, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var out []*routing.Claim
	for i := range sets.Items {
		for _, c := range kube.SetClaims(&sets.Items[i]) {
			if c != nil {
				out = append(out, c)
			}
		}
	}
	return out, nil
}
