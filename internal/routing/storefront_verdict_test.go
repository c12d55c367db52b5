package routing

import (
	"strings"
	"testing"
	"time"
)

func TestShopKey(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{ShopKey(PlatformWooCommerce, "https://Shop.example.com/"), ShopKey(PlatformWooCommerce, "http://shop.example.com")},
		{ShopKey(PlatformWooCommerce, "https://shop.example.com/store//"), ShopKey(PlatformWooCommerce, "https://SHOP.example.com/store")},
		{ShopKey(PlatformShopify, "Acme.myshopify.com"), ShopKey(PlatformShopify, "acme.myshopify.com")},
	} {
		if c.a != c.b {
			t.Errorf("%q != %q", c.a, c.b)
		}
	}
	if ShopKey(PlatformShopify, "acme.myshopify.com") == ShopKey(PlatformWooCommerce, "acme.myshopify.com") {
		t.Error("the platform is part of the key")
	}
}

func TestDecideStorefront(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := func(name string, age time.Duration) *StorefrontSpec {
		return &StorefrontSpec{Ref: Ref{"shop", name}, Rank: Rank{Created: t0.Add(-age), Ref: Ref{"shop", name}}, Platform: PlatformShopify,
			Shop: "acme.myshopify.com", SecretName: "hook", SecretKey: "secret", OfferRefs: []Ref{{"shop", "summer"}, {"shop", "winter"}}}
	}
	young, old := spec("young", 0), spec("old", time.Hour)
	ok := map[Ref]OfferVerdict{{"shop", "summer"}: {Ready: true}, {"shop", "winter"}: {Ready: true}}
	for _, c := range []struct {
		name        string
		sf          *StorefrontSpec
		in          StorefrontInputs
		reason, say string
		stalled     bool
	}{
		{"valid", young, StorefrontInputs{SameShop: []*StorefrontSpec{young}, SecretPresent: true, Offers: ok}, ReasonValid, "2 offer", false},
		{"younger duplicate", young, StorefrontInputs{SameShop: []*StorefrontSpec{young, old}, SecretPresent: true, Offers: ok}, ReasonDuplicateShop, "shop/old", true},
		{"older keeps it", old, StorefrontInputs{SameShop: []*StorefrontSpec{young, old}, SecretPresent: true, Offers: ok}, ReasonValid, "", false},
		{"secret", young, StorefrontInputs{Offers: ok}, ReasonSecretMissing, `shop/hook has no non-empty key "secret"`, false},
		{"offer missing", young, StorefrontInputs{SecretPresent: true, Offers: map[Ref]OfferVerdict{{"shop", "summer"}: {Ready: true}}}, ReasonOfferNotFound, "winter", false},
		{"offer not ready", young, StorefrontInputs{SecretPresent: true, Offers: map[Ref]OfferVerdict{{"shop", "summer"}: {Ready: true},
			{"shop", "winter"}: {Reason: ReasonDuplicateOfferID}}}, ReasonOfferNotReady, "winter (DuplicateOfferID)", false},
	} {
		v := DecideStorefront(c.sf, c.in)
		if v.Reason != c.reason || v.Ready != (c.reason == ReasonValid) || v.Stalled != c.stalled || !strings.Contains(v.Message, c.say) {
			t.Errorf("%s: %+v", c.name, v)
		}
	}
	if h, dup := WouldDuplicateShop([]*StorefrontSpec{old, young}, spec("new", -time.Hour)); !dup || h != old.Ref {
		t.Errorf("WouldDuplicateShop = %v %v, want the oldest holder", h, dup)
	}
	if _, dup := WouldDuplicateShop([]*StorefrontSpec{old}, old); dup {
		t.Error("a Storefront is no duplicate of itself")
	}
}
