package routing

import (
	"fmt"
	"slices"
	"strings"
)

// Storefront condition reasons (SPEC §8 names Valid, SecretMissing and
// OfferNotFound; OfferNotReady and DuplicateShop are ours, see
// docs/integrations.md).
const (
	ReasonSecretMissing = "SecretMissing"
	ReasonDuplicateShop = "DuplicateShop"
)

// StorefrontSpec is a Storefront as declared, whatever kind declares it.
type StorefrontSpec struct {
	Ref        Ref
	Rank       Rank
	Platform   string
	Shop       string
	SecretName string
	SecretKey  string
	OfferRefs  []Ref
}

// ShopKey is the identity of a shop for the "one Storefront per shop" rule:
// the platform and the shop folded to lower case; for WooCommerce also
// without the scheme and trailing slashes, so https://Shop.example.com/ and
// http://shop.example.com are one shop.
func ShopKey(platform, shop string) string {
	s := strings.ToLower(strings.TrimSpace(shop))
	if platform == PlatformWooCommerce {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
		s = strings.TrimRight(s, "/")
	}
	return platform + "/" + s
}

// StorefrontInputs is what deciding a Storefront needs beyond its spec.
type StorefrontInputs struct {
	// SameShop are the Storefronts whose ShopKey equals this one's (it may
	// be among them).
	SameShop []*StorefrontSpec
	// SecretPresent: the Secret exists and its key holds a non-empty value.
	SecretPresent bool
	// Offers are the verdicts of the referenced Offers that exist; a ref
	// missing from the map is an Offer that does not exist.
	Offers map[Ref]OfferVerdict
}

// StorefrontVerdict is the decision about one Storefront (its Ready
// condition). Stalled: it cannot become Ready without a change to some
// object (kstatus Failed). Holder is the older Storefront of the same shop.
type StorefrontVerdict struct {
	Ready   bool
	Reason  string
	Message string
	Stalled bool
	Holder  Ref
}

// DecideStorefront decides a Storefront: the oldest Storefront of a shop
// owns it (creation time, then namespace/name), then its signing secret must
// be there, then every offer must exist and be Ready. Only a Ready
// Storefront is published to trackers.
func DecideStorefront(sf *StorefrontSpec, in StorefrontInputs) StorefrontVerdict {
	key := ShopKey(sf.Platform, sf.Shop)
	for _, o := range in.SameShop {
		if o.Ref != sf.Ref && ShopKey(o.Platform, o.Shop) == key && o.Rank.Compare(sf.Rank) < 0 {
			return StorefrontVerdict{Reason: ReasonDuplicateShop, Stalled: true, Holder: o.Ref,
				Message: fmt.Sprintf("%s shop %s is already connected by Storefront %s (the oldest Storefront of a shop owns it)", sf.Platform, sf.Shop, o.Ref)}
		}
	}
	if !in.SecretPresent {
		return StorefrontVerdict{Reason: ReasonSecretMissing,
			Message: fmt.Sprintf("the signing secret is missing: Secret %s/%s has no non-empty key %q", sf.Ref.Namespace, sf.SecretName, sf.SecretKey)}
	}
	var missing, notReady []string
	for _, r := range sf.OfferRefs {
		v, ok := in.Offers[r]
		switch {
		case !ok:
			missing = append(missing, r.Name)
		case !v.Ready:
			notReady = append(notReady, fmt.Sprintf("%s (%s)", r.Name, v.Reason))
		}
	}
	if len(missing) > 0 {
		return StorefrontVerdict{Reason: ReasonOfferNotFound,
			Message: fmt.Sprintf("offerRefs name Offers that do not exist in namespace %s: %s", sf.Ref.Namespace, strings.Join(missing, ", "))}
	}
	if len(notReady) > 0 {
		return StorefrontVerdict{Reason: ReasonOfferNotReady,
			Message: "offerRefs name Offers that are not Ready: " + strings.Join(notReady, ", ")}
	}
	return StorefrontVerdict{Ready: true, Reason: ReasonValid,
		Message: fmt.Sprintf("trackers accept %s webhooks from %s for %d offer(s)", sf.Platform, sf.Shop, len(sf.OfferRefs))}
}

// WouldDuplicateShop reports the Storefront that already owns candidate's
// shop, for the admission webhook: any other Storefront of the same shop,
// whatever its age (a candidate being created is the youngest anyway; on an
// update that changes the shop, the other one owns it).
func WouldDuplicateShop(existing []*StorefrontSpec, candidate *StorefrontSpec) (Ref, bool) {
	key := ShopKey(candidate.Platform, candidate.Shop)
	others := slices.DeleteFunc(slices.Clone(existing), func(o *StorefrontSpec) bool {
		return o.Ref == candidate.Ref || ShopKey(o.Platform, o.Shop) != key
	})
	if len(others) == 0 {
		return Ref{}, false
	}
	slices.SortFunc(others, func(a, b *StorefrontSpec) int { return a.Rank.Compare(b.Rank) })
	return others[0].Ref, true
}
