package routeserver

import (
	"context"
	"fmt"
	"net"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// Storefronts (SPEC §8) are published with their signing secret: trackers
// verify shop webhooks with it. The manager's cache holds Secret hashes only
// (kube.HashSecretData), so the value of a Ready Storefront's secret is read
// from the API server (SecretReader) when it is published, and lives in the
// routing table — in memory, never logged (routing.Storefront redacts it).
// Which Storefront is Ready is decided by the same code as its controller
// (kube.Resolver.StorefrontVerdict), from the cache.
//
// The secret is sent only on a TLS connection or to a loopback peer
// (secretsAllowed); any other client gets the table without storefronts.

// watchStorefronts marks Storefronts dirty on the events that can change
// what is published: a Storefront's creation, spec change (generation) or
// deletion — and then every Storefront of the same shop, as ownership may
// move —, a change of a signing Secret's data (a rotation), and changes of
// the Offers they name, or of an Offer's token Secret (an Offer's readiness).
func (s *Server) watchStorefronts(ctx context.Context) error {
	sfInf, err := s.Cache.GetInformer(ctx, &trackingv1alpha1.Storefront{})
	if err != nil {
		return err
	}
	offerInf, err := s.Cache.GetInformer(ctx, &trackingv1alpha1.Offer{})
	if err != nil {
		return err
	}
	secretInf, err := s.Cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	res := kube.Resolver{Reader: s.Cache}
	markAll := func(list []*trackingv1alpha1.Storefront, err error, what string) {
		if err != nil {
			s.Log.Error(err, "Failed to list Storefronts "+what)
			return
		}
		if len(list) == 0 {
			return
		}
		s.mark(func(d *dirtySet) {
			for _, sf := range list {
				d.storefronts[kube.RefOf(sf)] = struct{}{}
			}
		})
	}
	onStorefront := func(obj any) {
		sf, ok := unwrap(obj).(*trackingv1alpha1.Storefront)
		if !ok {
			return
		}
		s.mark(func(d *dirtySet) { d.storefronts[kube.RefOf(sf)] = struct{}{} })
		list, err := res.StorefrontsWithShop(ctx, string(sf.Spec.Platform), sf.Spec.Shop)
		markAll(list, err, "sharing a shop")
	}
	offerStorefronts := func(o *trackingv1alpha1.Offer) {
		// An Offer's verdict depends on the Offers sharing its id too.
		same, err := res.OffersWithID(ctx, o.Spec.ID)
		if err != nil {
			s.Log.Error(err, "Failed to list Offers sharing an id")
			return
		}
		same = append(same, o)
		for _, x := range same {
			list, err := res.StorefrontsOfOffer(ctx, x.Namespace, x.Name)
			markAll(list, err, "of an Offer")
		}
	}
	onOffer := func(obj any) {
		if o, ok := unwrap(obj).(*trackingv1alpha1.Offer); ok {
			offerStorefronts(o)
		}
	}
	onSecret := func(obj any) {
		sec, ok := unwrap(obj).(*corev1.Secret)
		if !ok {
			return
		}
		list, err := res.StorefrontsUsingSecret(ctx, sec.Namespace, sec.Name)
		markAll(list, err, "using a Secret")
		var offers trackingv1alpha1.OfferList
		if err := s.Cache.List(ctx, &offers, client.MatchingFields{kube.IndexTokenSecret: sec.Namespace + "/" + sec.Name}); err != nil {
			s.Log.Error(err, "Failed to list Offers using a Secret")
			return
		}
		for i := range offers.Items {
			list, err := res.StorefrontsOfOffer(ctx, offers.Items[i].Namespace, offers.Items[i].Name)
			markAll(list, err, "of an Offer")
		}
	}
	for _, w := range []struct {
		inf cache.Informer
		fn  func(any)
	}{{sfInf, onStorefront}, {offerInf, onOffer}, {secretInf, onSecret}} {
		if err := onRelevant(w.inf, w.fn); err != nil {
			return err
		}
	}
	return nil
}

// buildStorefronts decides every Storefront, for the first table.
func (s *Server) buildStorefronts(ctx context.Context) ([]routing.Storefront, error) {
	var list trackingv1alpha1.StorefrontList
	if err := s.Cache.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing Storefronts: %w", err)
	}
	var out []routing.Storefront
	for i := range list.Items {
		wire, ok, err := s.storefront(ctx, &list.Items[i])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, wire)
		}
	}
	return out, nil
}

// compileStorefronts decides the dirty Storefronts: the Ready ones are
// upserted with their secret, the others (and the deleted ones) deleted.
// Table.Changes then drops what did not change.
func (s *Server) compileStorefronts(ctx context.Context, dirty map[routing.Ref]struct{}, delta *routing.Delta) error {
	for ref := range dirty {
		var sf trackingv1alpha1.Storefront
		if err := s.Cache.Get(ctx, kube.Key(ref), &sf); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("reading Storefront %s: %w", ref, err)
			}
			delta.DeletedStorefronts = append(delta.DeletedStorefronts, ref.String())
			continue
		}
		wire, ok, err := s.storefront(ctx, &sf)
		if err != nil {
			return err
		}
		if ok {
			delta.Storefronts = append(delta.Storefronts, wire)
		} else {
			delta.DeletedStorefronts = append(delta.DeletedStorefronts, ref.String())
		}
	}
	return nil
}

// storefront decides one Storefront and, when Ready, reads its secret.
func (s *Server) storefront(ctx context.Context, sf *trackingv1alpha1.Storefront) (routing.Storefront, bool, error) {
	v, err := kube.Resolver{Reader: s.Cache}.StorefrontVerdict(ctx, sf)
	if err != nil {
		return routing.Storefront{}, false, err
	}
	if !v.Ready {
		return routing.Storefront{}, false, nil
	}
	if s.SecretReader == nil {
		return routing.Storefront{}, false, fmt.Errorf("route server: no SecretReader to read Storefront %s/%s's signing secret", sf.Namespace, sf.Name)
	}
	secret, found, err := kube.SigningSecret(ctx, s.SecretReader, sf)
	if err != nil || !found {
		// Not found: deleted since the cache saw it; its event marks the
		// Storefront again.
		return routing.Storefront{}, false, err
	}
	return kube.WireStorefront(sf, secret), true, nil
}

// secretsAllowed: storefront secrets go only over TLS or to a loopback peer
// (make dev, e2e).
func secretsAllowed(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withoutSecrets is what a client not allowed secrets gets instead of m.
func withoutSecrets(m Message) Message {
	switch {
	case m.Snapshot != nil && len(m.Snapshot.Storefronts) > 0:
		snap := *m.Snapshot
		snap.Storefronts = nil
		m.Snapshot = &snap
	case m.Delta != nil && len(m.Delta.Storefronts)+len(m.Delta.DeletedStorefronts) > 0:
		d := *m.Delta
		d.Storefronts, d.DeletedStorefronts = nil, nil
		m.Delta = &d
	}
	return m
}

// withholding logs that a client on a plaintext, non-loopback connection
// gets the table without its n storefronts.
func (s *Server) withholding(r *http.Request, n int) {
	if n > 0 {
		s.Log.Info("Withholding storefronts from a client on a plaintext connection: serve the routes over TLS (--route-tls)",
			"remote", r.RemoteAddr, "storefronts", n)
	}
}
