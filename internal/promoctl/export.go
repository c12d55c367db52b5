package promoctl

import (
	"cmp"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// ExportHeader is the header export writes: the import columns, then the
// offer, the state, and the object holding the code. Import accepts it.
var ExportHeader = []string{colCode, colAffiliateID, colStartDate, colEndDate, colDescription, colOffer, colState, colKind, colObject}

// Exporter writes every code of a namespace (or of all) as CSV.
type Exporter struct {
	Client client.Client
	// Namespace to export; empty: every namespace.
	Namespace string
	// Offer, when set, exports only codes of that offer.
	Offer string
	// Now is the instant states are computed at (time.Now when nil).
	Now func() time.Time
}

// Export writes the CSV and returns the number of codes written.
func (e *Exporter) Export(ctx context.Context, w io.Writer) (int, error) {
	now := time.Now()
	if e.Now != nil {
		now = e.Now()
	}
	var ns []client.ListOption
	if e.Namespace != "" {
		ns = append(ns, client.InNamespace(e.Namespace))
	}
	var offers trackingv1alpha1.OfferList
	if err := e.Client.List(ctx, &offers, ns...); err != nil {
		return 0, fmt.Errorf("listing Offers: %w", err)
	}
	offerState := map[routing.Ref]routing.OfferState{}
	for i := range offers.Items {
		o := &offers.Items[i]
		offerState[routing.Ref{Namespace: o.Namespace, Name: o.Name}] = routing.OfferState{
			Exists: true, ID: o.Spec.ID, Enabled: o.Spec.Tracking.PromoCodes.Enabled,
			Ready: apimeta.IsStatusConditionTrue(o.Status.Conditions, routing.ConditionReady),
		}
	}

	cw := csv.NewWriter(w)
	if err := cw.Write(ExportHeader); err != nil {
		return 0, err
	}
	n := 0
	write := func(c *routing.Claim, state routing.State, kind string) error {
		n++
		return cw.Write([]string{c.Code, strconv.FormatInt(c.AffiliateID, 10), date(c.Start), date(c.End), c.Description,
			c.OfferRef.Name, string(state), kind, c.Ref.String()})
	}

	var pcs trackingv1alpha1.PromoCodeList
	if err := e.Client.List(ctx, &pcs, ns...); err != nil {
		return 0, fmt.Errorf("listing PromoCodes: %w", err)
	}
	slices.SortFunc(pcs.Items, func(a, b trackingv1alpha1.PromoCode) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for i := range pcs.Items {
		pc := &pcs.Items[i]
		if e.Offer != "" && pc.Spec.OfferRef.Name != e.Offer {
			continue
		}
		c := &routing.Claim{Code: pc.Spec.Code, AffiliateID: pc.Spec.AffiliateID, Start: timeOf(pc.Spec.StartDate), End: timeOf(pc.Spec.EndDate),
			Description: pc.Spec.Description, OfferRef: routing.Ref{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name},
			Ref: routing.Ref{Namespace: pc.Namespace, Name: pc.Name}}
		state := routing.State(pc.Status.State)
		if state == "" { // not reconciled yet
			state = routing.StatusOf(c, routing.CodeVerdict{Accepted: true}, offerState[c.OfferRef], now).State
		}
		if err := write(c, state, "PromoCode"); err != nil {
			return n, err
		}
	}

	// Sets stream page by page, in the order the API server lists them
	// (namespace, name): a million entries are never held at once.
	var werr error
	err := listSets(ctx, e.Client, func(s *trackingv1alpha1.PromoCodeSet) {
		if werr != nil || (e.Offer != "" && s.Spec.OfferRef.Name != e.Offer) {
			return
		}
		offer := routing.Ref{Namespace: s.Namespace, Name: s.Spec.OfferRef.Name}
		rejected := map[string]bool{}
		for _, r := range s.Status.RejectedCodes {
			rejected[routing.Fold(r.Code)] = true
		}
		for i := range s.Spec.Codes {
			en := &s.Spec.Codes[i]
			c := EntryClaim(s, en)
			c.OfferRef = offer
			v := routing.CodeVerdict{Accepted: !rejected[routing.Fold(en.Code)]}
			if werr = write(c, routing.StatusOf(c, v, offerState[offer], now).State, "PromoCodeSet"); werr != nil {
				return
			}
		}
	}, ns...)
	if err != nil {
		return n, err
	}
	if werr != nil {
		return n, werr
	}
	cw.Flush()
	return n, cw.Error()
}

// EntryClaim is a set entry as a claim: its own dates and description, else the set's.
func EntryClaim(s *trackingv1alpha1.PromoCodeSet, en *trackingv1alpha1.PromoCodeSetEntry) *routing.Claim {
	c := &routing.Claim{Code: en.Code, Folded: routing.Fold(en.Code), AffiliateID: en.AffiliateID,
		Ref:   routing.Ref{Namespace: s.Namespace, Name: s.Name},
		Start: timeOf(cmp.Or(en.StartDate, s.Spec.StartDate)), End: timeOf(cmp.Or(en.EndDate, s.Spec.EndDate)),
		Description: cmp.Or(en.Description, s.Spec.Description)}
	return c
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
