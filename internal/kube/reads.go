package kube

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// Field indexes registered on the manager's cache, so related objects are
// found without listing everything.
const (
	// IndexFoldedCode indexes PromoCodes by routing.Fold(spec.code).
	IndexFoldedCode = "spec.code.folded"
	// IndexOfferRef indexes PromoCodes and PromoCodeSets by "namespace/offerRef.name".
	IndexOfferRef = "spec.offerRef.namespaced"
	// IndexOfferID indexes Offers by spec.id.
	IndexOfferID = "spec.id"
	// IndexTokenSecret indexes Offers by "namespace/tokenSecretRef.name".
	IndexTokenSecret = "spec.tracking.tokenSecretRef.namespaced"
)

// SetupIndexes registers the field indexes and the PromoCodeSet folded-code
// directory (IndexSetFoldedCode), on a cache made by NewCache: any other
// FieldIndexer is refused, rather than left without the directory.
func SetupIndexes(ctx context.Context, idx client.FieldIndexer) error {
	sc, ok := idx.(*setCache)
	if !ok {
		return fmt.Errorf("indexing %s: %T is not a cache made by kube.NewCache (manager.Options.NewCache), which keeps the PromoCodeSet folded-code directory",
			IndexSetFoldedCode, idx)
	}
	if err := sc.indexSetCodes(ctx); err != nil {
		return fmt.Errorf("indexing %s: %w", IndexSetFoldedCode, err)
	}
	for _, i := range []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&trackingv1alpha1.PromoCode{}, IndexFoldedCode, func(o client.Object) []string {
			return []string{routing.Fold(o.(*trackingv1alpha1.PromoCode).Spec.Code)}
		}},
		{&trackingv1alpha1.PromoCode{}, IndexOfferRef, func(o client.Object) []string {
			return []string{OfferKeyOf(o.(*trackingv1alpha1.PromoCode)).String()}
		}},
		{&trackingv1alpha1.PromoCodeSet{}, IndexOfferRef, func(o client.Object) []string {
			return []string{SetOfferKey(o.(*trackingv1alpha1.PromoCodeSet)).String()}
		}},
		{&trackingv1alpha1.Offer{}, IndexOfferID, func(o client.Object) []string {
			return []string{strconv.FormatInt(o.(*trackingv1alpha1.Offer).Spec.ID, 10)}
		}},
		{&trackingv1alpha1.Offer{}, IndexTokenSecret, func(o client.Object) []string {
			offer := o.(*trackingv1alpha1.Offer)
			if ref := offer.Spec.Tracking.TokenSecretRef; ref != nil {
				return []string{offer.Namespace + "/" + ref.Name}
			}
			return nil
		}},
	} {
		if err := idx.IndexField(ctx, i.obj, i.field, i.fn); err != nil {
			return fmt.Errorf("indexing %s: %w", i.field, err)
		}
	}
	return nil
}

// HashSecretData is the cache transform for Secrets: every data value is
// replaced by its SHA-256, so raw tokens never sit in the manager's memory and
// the hash is what the routing table carries to trackers.
func HashSecretData(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	s.Annotations = nil // kubectl's last-applied-configuration may hold the value
	for k, v := range s.Data {
		sum := sha256.Sum256(v)
		s.Data[k] = sum[:]
	}
	for k, v := range s.StringData {
		sum := sha256.Sum256([]byte(v))
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[k] = sum[:]
	}
	s.StringData = nil
	return s, nil
}

// Resolver reads what a decision needs from a (cached) reader.
type Resolver struct {
	Reader client.Reader
}

// CodeGroup lists every PromoCode whose code folds to folded.
func (r Resolver) CodeGroup(ctx context.Context, folded string) ([]*trackingv1alpha1.PromoCode, error) {
	var list trackingv1alpha1.PromoCodeList
	if err := r.Reader.List(ctx, &list, client.MatchingFields{IndexFoldedCode: folded}); err != nil {
		return nil, fmt.Errorf("listing PromoCodes with code %s: %w", folded, err)
	}
	out := make([]*trackingv1alpha1.PromoCode, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// OffersWithID lists every Offer whose spec.id is id.
func (r Resolver) OffersWithID(ctx context.Context, id int64) ([]*trackingv1alpha1.Offer, error) {
	var list trackingv1alpha1.OfferList
	if err := r.Reader.List(ctx, &list, client.MatchingFields{IndexOfferID: strconv.FormatInt(id, 10)}); err != nil {
		return nil, fmt.Errorf("listing Offers with id %d: %w", id, err)
	}
	out := make([]*trackingv1alpha1.Offer, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// TokenHash returns the SHA-256 of an Offer's token secret value (the cache
// holds hashes only, see HashSecretData), and whether it was found.
func (r Resolver) TokenHash(ctx context.Context, o *trackingv1alpha1.Offer) ([]byte, bool, error) {
	ref := o.Spec.Tracking.TokenSecretRef
	if ref == nil {
		return nil, false, nil
	}
	var s corev1.Secret
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading token Secret %s/%s: %w", o.Namespace, ref.Name, err)
	}
	h, ok := s.Data[ref.Key]
	return h, ok && len(h) == sha256.Size, nil
}

// OfferVerdict decides an Offer: id ownership, goals, token secret, through
// the offer chain (routing.CompileOffers). It returns the token hash for the
// routing table.
func (r Resolver) OfferVerdict(ctx context.Context, o *trackingv1alpha1.Offer) (routing.OfferVerdict, []byte, error) {
	same, err := r.OffersWithID(ctx, o.Spec.ID)
	if err != nil {
		return routing.OfferVerdict{}, nil, err
	}
	if !containsRef(same, RefOf(o)) {
		same = append(same, o) // the cache may lag behind a Get
	}
	hash, found, err := r.TokenHash(ctx, o)
	if err != nil {
		return routing.ResolveOfferIDs(Offers(same))[RefOf(o)], nil, err
	}
	var tokens map[routing.Ref][]byte
	if found {
		tokens = map[routing.Ref][]byte{RefOf(o): hash}
	}
	_, verdicts := routing.CompileOffers(Offers(same), tokens)
	return verdicts[RefOf(o)], hash, nil
}

func containsRef(offers []*trackingv1alpha1.Offer, ref routing.Ref) bool {
	for _, o := range offers {
		if RefOf(o) == ref {
			return true
		}
	}
	return false
}

// Tokens returns the token hash of every Offer whose token secret holds one,
// as routing.CompileOffers takes them.
func (r Resolver) Tokens(ctx context.Context, offers []*trackingv1alpha1.Offer) (map[routing.Ref][]byte, error) {
	tokens := map[routing.Ref][]byte{}
	for _, o := range offers {
		h, found, err := r.TokenHash(ctx, o)
		if err != nil {
			return nil, err
		}
		if found {
			tokens[RefOf(o)] = h
		}
	}
	return tokens, nil
}
