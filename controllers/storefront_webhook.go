package controllers

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// The Storefront webhook refuses a second Storefront for a shop (the CRD's
// CEL rules already check the platform/shop format). Like the others it reads
// the cache and can be off; the controller stays authoritative (DuplicateShop).

// +kubebuilder:webhook:path=/validate-tracking-promocodes-dev-v1alpha1-storefront,mutating=false,failurePolicy=fail,sideEffects=None,groups=tracking.promocodes.dev,resources=storefronts,verbs=create;update,versions=v1alpha1,name=vstorefront.tracking.promocodes.dev,admissionReviewVersions=v1,timeoutSeconds=5

// StorefrontValidator refuses a Storefront whose shop another Storefront,
// anywhere in the cluster, already connects.
type StorefrontValidator struct {
	Reader client.Reader
	Now    func() time.Time
}

var _ admission.Validator[*trackingv1alpha1.Storefront] = &StorefrontValidator{}

func (v *StorefrontValidator) check(ctx context.Context, sf *trackingv1alpha1.Storefront) error {
	same, err := kube.Resolver{Reader: v.Reader}.StorefrontsWithShop(ctx, string(sf.Spec.Platform), sf.Spec.Shop)
	if err != nil {
		return err
	}
	c := sf.DeepCopy()
	if c.CreationTimestamp.IsZero() {
		c.CreationTimestamp = metav1.NewTime(now(v.Now))
	}
	specs := make([]*routing.StorefrontSpec, len(same))
	for i, o := range same {
		specs[i] = kube.StorefrontSpec(o)
	}
	if holder, dup := routing.WouldDuplicateShop(specs, kube.StorefrontSpec(c)); dup {
		return fmt.Errorf("%s shop %s is already connected by Storefront %s: one Storefront per shop", sf.Spec.Platform, sf.Spec.Shop, holder)
	}
	return nil
}

// ValidateCreate refuses a shop already connected.
func (v *StorefrontValidator) ValidateCreate(ctx context.Context, sf *trackingv1alpha1.Storefront) (admission.Warnings, error) {
	return nil, v.check(ctx, sf)
}

// ValidateUpdate refuses moving to a shop already connected; an update that
// keeps the shop is admitted (the controller decides who owns it).
func (v *StorefrontValidator) ValidateUpdate(ctx context.Context, old, sf *trackingv1alpha1.Storefront) (admission.Warnings, error) {
	if routing.ShopKey(string(old.Spec.Platform), old.Spec.Shop) == routing.ShopKey(string(sf.Spec.Platform), sf.Spec.Shop) {
		return nil, nil
	}
	return nil, v.check(ctx, sf)
}

// ValidateDelete admits.
func (v *StorefrontValidator) ValidateDelete(context.Context, *trackingv1alpha1.Storefront) (admission.Warnings, error) {
	return nil, nil
}

// SetupStorefrontWebhook registers the Storefront webhook; SetupWebhooks calls it.
func SetupStorefrontWebhook(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &trackingv1alpha1.Storefront{}).
		WithValidator(&StorefrontValidator{Reader: mgr.GetClient()}).Complete(); err != nil {
		return fmt.Errorf("setting up the Storefront webhook: %w", err)
	}
	return nil
}
