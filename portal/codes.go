package portal

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// indexAffiliate is the cache field index of PromoCodes by spec.affiliateID.
const indexAffiliate = "spec.affiliateID"

// IndexCodes registers the field index Codes.List needs on the cache that
// backs reader.
func IndexCodes(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &trackingv1alpha1.PromoCode{}, indexAffiliate, func(o client.Object) []string {
		return []string{strconv.FormatInt(o.(*trackingv1alpha1.PromoCode).Spec.AffiliateID, 10)}
	})
}

// Code is a PromoCode as the portal shows it: what an affiliate's widget
// lists, and a row of the Promo Codes report.
type Code struct {
	Code        string     `json:"code"`
	OfferID     int64      `json:"offer_id"`
	OfferTitle  string     `json:"offer_title"`
	Description string     `json:"description,omitempty"`
	StartDate   *time.Time `json:"startDate,omitempty"`
	EndDate     *time.Time `json:"endDate,omitempty"`
	State       string     `json:"state"`
	// Back-office fields, not part of the affiliate API.
	AffiliateID int64  `json:"-"`
	Ref         string `json:"-"`
	Offer       string `json:"-"`
}

// CodeFilter selects codes. Zero fields do not filter.
type CodeFilter struct {
	AffiliateID int64
	OfferID     int64
	Code        string // case-insensitive
	// Owned keeps only what the affiliate API shows: codes the affiliate
	// holds (not Rejected) on offers with promo codes enabled.
	Owned bool
}

// Codes lists PromoCodes from the cluster. The state is the one the manager
// wrote to status, so the portal, kubectl and the trackers agree.
type Codes struct{ Reader client.Reader }

// List returns the codes matching f, ordered by offer id, code and affiliate.
func (c *Codes) List(ctx context.Context, f CodeFilter) ([]Code, error) {
	var opts []client.ListOption
	if f.AffiliateID != 0 {
		opts = append(opts, client.MatchingFields{indexAffiliate: strconv.FormatInt(f.AffiliateID, 10)})
	}
	var codes trackingv1alpha1.PromoCodeList
	if err := c.Reader.List(ctx, &codes, opts...); err != nil {
		return nil, err
	}
	var offers trackingv1alpha1.OfferList
	if err := c.Reader.List(ctx, &offers); err != nil {
		return nil, err
	}
	byName := make(map[types.NamespacedName]*trackingv1alpha1.Offer, len(offers.Items))
	for i := range offers.Items {
		o := &offers.Items[i]
		byName[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}] = o
	}
	out := []Code{}
	for i := range codes.Items {
		pc := &codes.Items[i]
		if f.Code != "" && !strings.EqualFold(pc.Spec.Code, f.Code) {
			continue
		}
		offer := byName[types.NamespacedName{Namespace: pc.Namespace, Name: pc.Spec.OfferRef.Name}]
		if f.Owned && (offer == nil || !offer.Spec.Tracking.PromoCodes.Enabled || pc.Status.State == trackingv1alpha1.StateRejected) {
			continue
		}
		code := Code{
			Code: pc.Spec.Code, Description: pc.Spec.Description, State: string(pc.Status.State),
			AffiliateID: pc.Spec.AffiliateID, Ref: pc.Namespace + "/" + pc.Name, Offer: pc.Spec.OfferRef.Name,
			StartDate: timeOf(pc.Spec.StartDate), EndDate: timeOf(pc.Spec.EndDate),
		}
		if offer != nil {
			code.OfferID, code.OfferTitle = offer.Spec.ID, offer.Spec.Title
		}
		if f.OfferID != 0 && code.OfferID != f.OfferID {
			continue
		}
		out = append(out, code)
	}
	slices.SortFunc(out, func(a, b Code) int {
		if a.OfferID != b.OfferID {
			return cmp.Compare(a.OfferID, b.OfferID)
		}
		if c := strings.Compare(strings.ToUpper(a.Code), strings.ToUpper(b.Code)); c != 0 {
			return c
		}
		return cmp.Compare(a.AffiliateID, b.AffiliateID)
	})
	return out, nil
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
