package controllers

import (
	"context"
	"errors"
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

// The webhooks refuse at create time what the controllers would reject, so
// `kubectl apply` fails loudly. They read the manager's cache, which can lag,
// and can be off: the controllers' resolution stays authoritative.
//
// failurePolicy=Fail: while the manager is unreachable, creates of PromoCodes
// and Offers are refused rather than admitted unchecked — a GitOps tool
// retries; nothing already admitted is affected, and trackers keep serving.
// timeoutSeconds=5 bounds how long an apply can hang on a slow manager.

// +kubebuilder:webhook:path=/validate-tracking-promocodes-dev-v1alpha1-promocode,mutating=false,failurePolicy=fail,sideEffects=None,groups=tracking.promocodes.dev,resources=promocodes,verbs=create,versions=v1alpha1,name=vpromocode.tracking.promocodes.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-tracking-promocodes-dev-v1alpha1-offer,mutating=false,failurePolicy=fail,sideEffects=None,groups=tracking.promocodes.dev,resources=offers,verbs=create;update,versions=v1alpha1,name=voffer.tracking.promocodes.dev,admissionReviewVersions=v1,timeoutSeconds=5

// PromoCodeValidator refuses a PromoCode that would lose SPEC §2 rule 4.
type PromoCodeValidator struct {
	Reader client.Reader
	Now    func() time.Time
}

var _ admission.Validator[*trackingv1alpha1.PromoCode] = &PromoCodeValidator{}

func now(f func() time.Time) time.Time {
	if f != nil {
		return f()
	}
	return time.Now()
}

// ValidateCreate refuses a code held by another affiliate or already on the offer.
func (v *PromoCodeValidator) ValidateCreate(ctx context.Context, pc *trackingv1alpha1.PromoCode) (admission.Warnings, error) {
	// PromoCodes and PromoCodeSet entries alike: a code a set holds is refused.
	group, err := kube.Resolver{Reader: v.Reader}.Claims(ctx, routing.Fold(pc.Spec.Code))
	if err != nil {
		return nil, err
	}
	if verdict, rejected := routing.WouldReject(group, kube.Claim(pc), now(v.Now)); rejected {
		return nil, errors.New(verdict.Message)
	}
	return nil, nil
}

// ValidateUpdate admits: code, offerRef and affiliateID are immutable (CEL).
func (v *PromoCodeValidator) ValidateUpdate(context.Context, *trackingv1alpha1.PromoCode, *trackingv1alpha1.PromoCode) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete admits.
func (v *PromoCodeValidator) ValidateDelete(context.Context, *trackingv1alpha1.PromoCode) (admission.Warnings, error) {
	return nil, nil
}

// OfferValidator refuses an Offer whose spec.id an older Offer owns.
type OfferValidator struct {
	Reader client.Reader
	Now    func() time.Time
}

var _ admission.Validator[*trackingv1alpha1.Offer] = &OfferValidator{}

func (v *OfferValidator) check(ctx context.Context, o *trackingv1alpha1.Offer) error {
	same, err := kube.Resolver{Reader: v.Reader}.OffersWithID(ctx, o.Spec.ID)
	if err != nil {
		return err
	}
	c := o.DeepCopy()
	if c.CreationTimestamp.IsZero() {
		c.CreationTimestamp = metav1.NewTime(now(v.Now))
	}
	others := make([]*trackingv1alpha1.Offer, 0, len(same)+1)
	for _, s := range same {
		if kube.RefOf(s) != kube.RefOf(c) {
			others = append(others, s)
		}
	}
	if verdict := routing.ResolveOfferIDs(kube.Offers(append(others, c)))[kube.RefOf(c)]; verdict.Reason == routing.ReasonDuplicateOfferID {
		return errors.New(verdict.Message)
	}
	return nil
}

// ValidateCreate refuses a taken id.
func (v *OfferValidator) ValidateCreate(ctx context.Context, o *trackingv1alpha1.Offer) (admission.Warnings, error) {
	return nil, v.check(ctx, o)
}

// ValidateUpdate refuses changing spec.id to a taken one.
func (v *OfferValidator) ValidateUpdate(ctx context.Context, old, o *trackingv1alpha1.Offer) (admission.Warnings, error) {
	if old.Spec.ID == o.Spec.ID {
		return nil, nil
	}
	return nil, v.check(ctx, o)
}

// ValidateDelete admits.
func (v *OfferValidator) ValidateDelete(context.Context, *trackingv1alpha1.Offer) (admission.Warnings, error) {
	return nil, nil
}

// SetupWebhooks registers the validating webhooks.
func SetupWebhooks(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &trackingv1alpha1.PromoCode{}).
		WithValidator(&PromoCodeValidator{Reader: mgr.GetClient()}).Complete(); err != nil {
		return fmt.Errorf("setting up the PromoCode webhook: %w", err)
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &trackingv1alpha1.Offer{}).
		WithValidator(&OfferValidator{Reader: mgr.GetClient()}).Complete(); err != nil {
		return fmt.Errorf("setting up the Offer webhook: %w", err)
	}
	if err := setupPromoCodeSetWebhook(mgr); err != nil {
		return err
	}
	return SetupStorefrontWebhook(mgr)
}
