package promoctl

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// holder is an accepted claim on a code outside the import.
type holder struct {
	affiliate int64
	offer     routing.Ref
	what      string // "PromoCode ns/name" or "PromoCodeSet ns/name"
}

// ErrPreflightForbidden marks a preflight that could not list the cluster's codes.
var ErrPreflightForbidden = fmt.Errorf("listing every code in the cluster is forbidden")

// Preflight checks the file's codes against every code in the cluster (all
// namespaces) before anything is written, as the webhook would one set at a
// time: a code another affiliate holds, or the same affiliate already holds
// on the same offer, is an error naming the line. Claims already rejected
// (a PromoCode in state Rejected, an entry in its set's status.rejectedCodes)
// and the import's own sets are not holders. The controller stays
// authoritative; this only keeps a refused import from stopping half-way.
func Preflight(ctx context.Context, c client.Client, name string, parsed *Parsed, p *Plan) error {
	return (&Checker{Client: c}).Preflight(ctx, name, parsed, p)
}

// Checker runs preflights.
type Checker struct {
	Client client.Client
	// CacheFile keeps the cluster's set entries between runs (ClaimCacheFile);
	// "" reads every set each time.
	CacheFile string
	// Warn, when set, hears of a cache that could not be written.
	Warn func(error)
}

// Preflight is the package's Preflight, reading sets through the cache.
func (k *Checker) Preflight(ctx context.Context, name string, parsed *Parsed, p *Plan) error {
	c := k.Client
	want := make(map[string]struct{}, len(parsed.Rows))
	for i := range parsed.Rows {
		want[parsed.Rows[i].Folded] = struct{}{}
	}
	held := map[string][]holder{}
	var pcs trackingv1alpha1.PromoCodeList
	if err := c.List(ctx, &pcs); err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("%w: %v", ErrPreflightForbidden, err)
		}
		return fmt.Errorf("listing PromoCodes in every namespace: %w", err)
	}
	for i := range pcs.Items {
		pc := &pcs.Items[i]
		f := routing.Fold(pc.Spec.Code)
		if _, ok := want[f]; !ok || pc.Status.State == trackingv1alpha1.StateRejected {
			continue
		}
		held[f] = append(held[f], holder{pc.Spec.AffiliateID, routing.Ref{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name},
			"PromoCode " + pc.Namespace + "/" + pc.Name})
	}
	sets, err := clusterSetClaims(ctx, c, k.CacheFile, k.Warn)
	if err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("%w: %v", ErrPreflightForbidden, err)
		}
		return err
	}
	for _, s := range sets {
		if s.Namespace == p.Namespace && s.Import == p.Prefix {
			continue // ours: the import replaces it
		}
		s.each(func(code []byte, affiliate int64) {
			if _, ok := want[string(code)]; !ok {
				return
			}
			f := string(code)
			held[f] = append(held[f], holder{affiliate, routing.Ref{Namespace: s.Namespace, Name: s.Offer},
				"PromoCodeSet " + s.Namespace + "/" + s.Name})
		})
	}
	v := &validator{}
	offer := routing.Ref{Namespace: p.Namespace, Name: p.Offer}
	for i := range parsed.Rows {
		r := &parsed.Rows[i]
		for _, h := range held[r.Folded] {
			at := LineError{Line: r.Line, Column: parsed.CodeColumn, Name: colCode}
			switch {
			case h.affiliate != r.AffiliateID:
				at.Msg = fmt.Sprintf("code %s belongs to affiliate %d (%s); a code belongs to one affiliate", r.Code, h.affiliate, h.what)
			case h.offer == offer:
				at.Msg = fmt.Sprintf("code %s is already on offer %s (%s, affiliate %d); a code can be used once per offer", r.Code, p.Offer, h.what, h.affiliate)
			default:
				continue
			}
			v.add(at)
			break
		}
	}
	if v.total > 0 {
		return &ValidationError{File: name, Errors: v.errs, Total: v.total}
	}
	return nil
}
