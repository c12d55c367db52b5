package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/kube"
	"promocodes.dev/promo-operator/internal/routing"
)

// +kubebuilder:webhook:path=/validate-tracking-promocodes-dev-v1alpha1-promocodeset,mutating=false,failurePolicy=fail,sideEffects=None,groups=tracking.promocodes.dev,resources=promocodesets,verbs=create;update,versions=v1alpha1,name=vpromocodeset.tracking.promocodes.dev,admissionReviewVersions=v1,timeoutSeconds=5

// maxRefusals is how many refused entries a webhook message lists.
const maxRefusals = 10

// PromoCodeSetValidator refuses a PromoCodeSet create or update whose new
// entries would lose SPEC §2 rule 4 (against PromoCodes or other sets), have
// the folded code of another entry of the set, or have empty effective
// dates. Entries already in the old object are not
// judged again: a set holding a rejected entry can still be edited.
type PromoCodeSetValidator struct {
	Reader client.Reader
	Now    func() time.Time
}

var _ admission.Validator[*trackingv1alpha1.PromoCodeSet] = &PromoCodeSetValidator{}

// ValidateCreate refuses entries that would be rejected.
func (v *PromoCodeSetValidator) ValidateCreate(ctx context.Context, s *trackingv1alpha1.PromoCodeSet) (admission.Warnings, error) {
	return nil, v.check(ctx, nil, s)
}

// ValidateUpdate refuses added or changed entries that would be rejected.
func (v *PromoCodeSetValidator) ValidateUpdate(ctx context.Context, old, s *trackingv1alpha1.PromoCodeSet) (admission.Warnings, error) {
	return nil, v.check(ctx, old, s)
}

// ValidateDelete admits.
func (v *PromoCodeSetValidator) ValidateDelete(context.Context, *trackingv1alpha1.PromoCodeSet) (admission.Warnings, error) {
	return nil, nil
}

// check: an entry is new when old has no entry with the same code (as
// written), affiliate and effective dates.
func (v *PromoCodeSetValidator) check(ctx context.Context, old, s *trackingv1alpha1.PromoCodeSet) error {
	type key struct {
		code       string
		affiliate  int64
		start, end time.Time
	}
	had := map[key]struct{}{}
	if old != nil {
		for i := range old.Spec.Codes {
			start, end := kube.EntryDates(old, i)
			had[key{old.Spec.Codes[i].Code, old.Spec.Codes[i].AffiliateID, start, end}] = struct{}{}
		}
	}
	var fresh []int
	for i := range s.Spec.Codes {
		start, end := kube.EntryDates(s, i)
		if _, ok := had[key{s.Spec.Codes[i].Code, s.Spec.Codes[i].AffiliateID, start, end}]; !ok {
			fresh = append(fresh, i)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	c := s
	if c.CreationTimestamp.IsZero() {
		c = &trackingv1alpha1.PromoCodeSet{ObjectMeta: *s.ObjectMeta.DeepCopy(), Spec: s.Spec}
		c.CreationTimestamp = metav1.NewTime(now(v.Now))
	}
	var only map[string]bool // nil: every entry is new (a create)
	if len(fresh) < len(s.Spec.Codes) {
		only = make(map[string]bool, len(fresh))
		for _, i := range fresh {
			only[routing.Fold(s.Spec.Codes[i].Code)] = true
		}
	}
	_, verdicts, err := kube.Resolver{Reader: v.Reader}.ResolveSetCodes(ctx, c, only)
	if err != nil {
		return err
	}
	// A new entry with the folded code of an existing entry of the set is
	// refused whatever its position (placed before it, it would win and make
	// the existing one lose); of two new ones, the later.
	byFold := make(map[string][]int, len(s.Spec.Codes))
	for i := range s.Spec.Codes {
		f := routing.Fold(s.Spec.Codes[i].Code)
		byFold[f] = append(byFold[f], i)
	}
	isFresh := make(map[int]bool, len(fresh))
	for _, i := range fresh {
		isFresh[i] = true
	}
	for _, i := range fresh {
		for _, j := range byFold[routing.Fold(s.Spec.Codes[i].Code)] {
			if j != i && (j < i || !isFresh[j]) && verdicts[i].Accepted {
				verdicts[i] = routing.CodeVerdict{Reason: routing.ReasonDuplicateCode, Message: fmt.Sprintf(
					"code %q is the same code as spec.codes[%d] (%q, codes compare case-insensitively); a set holds each code once",
					s.Spec.Codes[i].Code, j, s.Spec.Codes[j].Code)}
			}
		}
	}
	var refused []string
	n := 0
	for _, i := range fresh {
		if verdicts[i].Accepted {
			continue
		}
		n++
		if len(refused) < maxRefusals {
			refused = append(refused, fmt.Sprintf("spec.codes[%d] (code %q, affiliate %d): %s",
				i, s.Spec.Codes[i].Code, s.Spec.Codes[i].AffiliateID, verdicts[i].Message))
		}
	}
	if n == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d new entries of PromoCodeSet %s/%s would be rejected: %s", n, s.Namespace, s.Name, strings.Join(refused, "; "))
	if n > len(refused) {
		msg += fmt.Sprintf("; and %d more", n-len(refused))
	}
	return errors.New(msg)
}

func setupPromoCodeSetWebhook(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &trackingv1alpha1.PromoCodeSet{}).
		WithValidator(&PromoCodeSetValidator{Reader: mgr.GetClient()}).Complete(); err != nil {
		return fmt.Errorf("setting up the PromoCodeSet webhook: %w", err)
	}
	return nil
}
