package routing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStorefrontsApplyChangesAndSnapshot(t *testing.T) {
	acme := Storefront{Ref: "shop/acme", Platform: PlatformShopify, Shop: "acme.myshopify.com",
		Secret: []byte("s3cret"), OfferRefs: []string{"shop/summer-sale"}, Amount: "subtotal"}
	t0 := NewTable(Snapshot{Version: "v1", Storefronts: []Storefront{acme}})
	if got := t0.Storefront("shop/acme"); got == nil || !got.Equal(acme) {
		t.Fatalf("Storefront(shop/acme) = %v, want %v", got, acme)
	}
	if t0.Storefront("shop/other") != nil {
		t.Fatal("unknown storefront found")
	}

	same := t0.Changes(Delta{Version: "v2", Storefronts: []Storefront{acme}, DeletedStorefronts: []string{"shop/none"}})
	if same.Objects() != 0 {
		t.Fatalf("an unchanged storefront and a deletion of an absent one are changes: %+v", same)
	}
	rotated := acme
	rotated.Secret = []byte("rotated")
	if d := t0.Changes(Delta{Version: "v2", Storefronts: []Storefront{rotated}}); len(d.Storefronts) != 1 {
		t.Fatalf("a rotated secret is no change: %+v", d)
	}

	t1 := t0.Apply(Delta{Version: "v2", Storefronts: []Storefront{rotated}})
	if string(t1.Storefront("shop/acme").Secret) != "rotated" || string(t0.Storefront("shop/acme").Secret) != "s3cret" {
		t.Fatal("Apply must replace the storefront in the new table and leave the old one alone")
	}
	t2 := t1.Apply(Delta{Version: "v3", DeletedStorefronts: []string{"shop/acme"}})
	if t2.Storefront("shop/acme") != nil || t2.Storefronts() != 0 || t1.Storefronts() != 1 {
		t.Fatal("deleting a storefront")
	}
	if s := t1.Snapshot(); len(s.Storefronts) != 1 || !s.Storefronts[0].Equal(rotated) {
		t.Fatalf("snapshot storefronts = %v", s.Storefronts)
	}
	// A table built from an empty snapshot takes storefront deltas.
	if NewTable(Snapshot{}).Apply(Delta{Storefronts: []Storefront{acme}}).Storefront("shop/acme") == nil {
		t.Fatal("apply onto an empty table")
	}
}

func TestStorefrontSecretNeverPrinted(t *testing.T) {
	sf := Storefront{Ref: "shop/acme", Platform: PlatformShopify, Shop: "acme.myshopify.com", Secret: []byte("TOPSECRET")}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("storefront", "sf", sf, "ptr", &sf)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", sf), "%+v": fmt.Sprintf("%+v", sf), "%s": fmt.Sprintf("%s", &sf), "slog": logged.String(), //nolint:staticcheck // fmt's verbs are what is tested
	} {
		if strings.Contains(out, "TOPSECRET") || strings.Contains(out, "VE9QU0VDUkVU") {
			t.Errorf("%s shows the secret: %s", name, out)
		}
	}
	// The wire carries it (the route stream is TLS and authenticated).
	b, _ := json.Marshal(sf)
	var back Storefront
	if err := json.Unmarshal(b, &back); err != nil || string(back.Secret) != "TOPSECRET" {
		t.Fatalf("wire round trip lost the secret: %v %q", err, back.Secret)
	}
}
