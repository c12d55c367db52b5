package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// Storefront field indexes.
const (
	// IndexStorefrontSecret indexes Storefronts by "namespace/signingSecretRef.name".
	IndexStorefrontSecret = "spec.signingSecretRef.namespaced"
	// IndexStorefrontOffer indexes Storefronts by "namespace/name" of each offerRef.
	IndexStorefrontOffer = "spec.offerRefs.namespaced"
	// IndexStorefrontShop indexes Storefronts by routing.ShopKey(platform, shop).
	IndexStorefrontShop = "spec.shop.key"
)

// SetupStorefrontIndexes registers the Storefront field indexes. Separate
// from SetupIndexes: an index starts an informer, and the portal, which uses
// SetupIndexes, may not read Storefronts (nor should it need to).
func SetupStorefrontIndexes(ctx context.Context, idx client.FieldIndexer) error {
	for _, i := range []struct {
		field string
		fn    client.IndexerFunc
	}{
		{IndexStorefrontSecret, func(o client.Object) []string {
			sf := o.(*trackingv1alpha1.Storefront)
			return []string{sf.Namespace + "/" + sf.Spec.SigningSecretRef.Name}
		}},
		{IndexStorefrontOffer, func(o client.Object) []string {
			sf := o.(*trackingv1alpha1.Storefront)
			out := make([]string, 0, len(sf.Spec.OfferRefs))
			for _, r := range sf.Spec.OfferRefs {
				out = append(out, sf.Namespace+"/"+r.Name)
			}
			return out
		}},
		{IndexStorefrontShop, func(o client.Object) []string {
			sf := o.(*trackingv1alpha1.Storefront)
			return []string{routing.ShopKey(string(sf.Spec.Platform), sf.Spec.Shop)}
		}},
	} {
		if err := idx.IndexField(ctx, &trackingv1alpha1.Storefront{}, i.field, i.fn); err != nil {
			return fmt.Errorf("indexing %s: %w", i.field, err)
		}
	}
	return nil
}

// StorefrontSpec turns a Storefront into its spec for the core.
func StorefrontSpec(sf *trackingv1alpha1.Storefront) *routing.StorefrontSpec {
	s := &routing.StorefrontSpec{Ref: RefOf(sf), Rank: rankOf(sf), Platform: string(sf.Spec.Platform), Shop: sf.Spec.Shop,
		SecretName: sf.Spec.SigningSecretRef.Name, SecretKey: sf.Spec.SigningSecretRef.Key,
		OfferRefs: make([]routing.Ref, len(sf.Spec.OfferRefs))}
	for i, r := range sf.Spec.OfferRefs {
		s.OfferRefs[i] = routing.Ref{Namespace: sf.Namespace, Name: r.Name}
	}
	return s
}

// WireStorefront is a Ready Storefront as trackers get it, with its signing
// secret's raw bytes.
func WireStorefront(sf *trackingv1alpha1.Storefront, secret []byte) routing.Storefront {
	out := routing.Storefront{Ref: RefOf(sf).String(), Platform: string(sf.Spec.Platform), Shop: sf.Spec.Shop,
		Secret: secret, GoalAlias: sf.Spec.GoalAlias, Amount: string(sf.Spec.Amount),
		OfferRefs: make([]string, len(sf.Spec.OfferRefs))}
	if out.Amount == "" {
		out.Amount = string(trackingv1alpha1.AmountSubtotal)
	}
	for i, r := range sf.Spec.OfferRefs {
		out.OfferRefs[i] = sf.Namespace + "/" + r.Name
	}
	return out
}

// emptyHash is the SHA-256 of an empty value: what the cache holds for a key
// whose value is empty (see HashSecretData).
var emptyHash = sha256.Sum256(nil)

// listStorefronts lists Storefronts matching one index value.
func (r Resolver) listStorefronts(ctx context.Context, field, value string) ([]*trackingv1alpha1.Storefront, error) {
	var list trackingv1alpha1.StorefrontList
	if err := r.Reader.List(ctx, &list, client.MatchingFields{field: value}); err != nil {
		return nil, fmt.Errorf("listing Storefronts by %s=%s: %w", field, value, err)
	}
	out := make([]*trackingv1alpha1.Storefront, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// StorefrontsWithShop lists the Storefronts of one shop (routing.ShopKey).
func (r Resolver) StorefrontsWithShop(ctx context.Context, platform, shop string) ([]*trackingv1alpha1.Storefront, error) {
	return r.listStorefronts(ctx, IndexStorefrontShop, routing.ShopKey(platform, shop))
}

// StorefrontsUsingSecret lists the Storefronts signing with Secret namespace/name.
func (r Resolver) StorefrontsUsingSecret(ctx context.Context, namespace, name string) ([]*trackingv1alpha1.Storefront, error) {
	return r.listStorefronts(ctx, IndexStorefrontSecret, namespace+"/"+name)
}

// StorefrontsOfOffer lists the Storefronts whose offerRefs name Offer namespace/name.
func (r Resolver) StorefrontsOfOffer(ctx context.Context, namespace, name string) ([]*trackingv1alpha1.Storefront, error) {
	return r.listStorefronts(ctx, IndexStorefrontOffer, namespace+"/"+name)
}

// StorefrontVerdict decides a Storefront from the cache: its shop's other
// Storefronts, its signing Secret (present and non-empty; the cache holds
// hashes only, so the value is never read here) and its Offers' verdicts.
func (r Resolver) StorefrontVerdict(ctx context.Context, sf *trackingv1alpha1.Storefront) (routing.StorefrontVerdict, error) {
	spec := StorefrontSpec(sf)
	same, err := r.StorefrontsWithShop(ctx, spec.Platform, spec.Shop)
	if err != nil {
		return routing.StorefrontVerdict{}, err
	}
	in := routing.StorefrontInputs{Offers: map[routing.Ref]routing.OfferVerdict{}}
	for _, o := range same {
		in.SameShop = append(in.SameShop, StorefrontSpec(o))
	}
	var sec corev1.Secret
	switch err := r.Reader.Get(ctx, client.ObjectKey{Namespace: sf.Namespace, Name: spec.SecretName}, &sec); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return routing.StorefrontVerdict{}, fmt.Errorf("reading signing Secret %s/%s: %w", sf.Namespace, spec.SecretName, err)
	default:
		h, ok := sec.Data[spec.SecretKey]
		in.SecretPresent = ok && len(h) == sha256.Size && !bytes.Equal(h, emptyHash[:])
	}
	for _, ref := range spec.OfferRefs {
		if _, done := in.Offers[ref]; done {
			continue
		}
		var o trackingv1alpha1.Offer
		if err := r.Reader.Get(ctx, Key(ref), &o); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return routing.StorefrontVerdict{}, fmt.Errorf("reading Offer %s: %w", ref, err)
		}
		v, _, err := r.OfferVerdict(ctx, &o)
		if err != nil {
			return routing.StorefrontVerdict{}, err
		}
		in.Offers[ref] = v
	}
	return routing.DecideStorefront(spec, in), nil
}

// SigningSecret reads a Storefront's signing secret value from reader, which
// must not be the manager's cache (it holds hashes): the route server passes
// the manager's API reader. Found is false when the Secret or key is absent
// or the value empty.
func SigningSecret(ctx context.Context, reader client.Reader, sf *trackingv1alpha1.Storefront) (value []byte, found bool, err error) {
	var sec corev1.Secret
	ref := sf.Spec.SigningSecretRef
	if err := reader.Get(ctx, client.ObjectKey{Namespace: sf.Namespace, Name: ref.Name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading signing Secret %s/%s: %w", sf.Namespace, ref.Name, err)
	}
	v := sec.Data[ref.Key]
	return v, len(v) > 0, nil
}
