package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

func storefrontObj(ns, name, shop string, offers ...string) *trackingv1alpha1.Storefront {
	sf := &trackingv1alpha1.Storefront{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: trackingv1alpha1.StorefrontSpec{Platform: trackingv1alpha1.PlatformShopify, Shop: shop,
			SigningSecretRef: trackingv1alpha1.SecretKeyRef{Name: "shop-webhook", Key: "secret"}}}
	for _, o := range offers {
		sf.Spec.OfferRefs = append(sf.Spec.OfferRefs, trackingv1alpha1.LocalOfferReference{Name: o})
	}
	return sf
}

func signingSecret(ns, value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-webhook"}, StringData: map[string]string{"secret": value}}
}

var _ = Describe("Storefront", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })
	status := func(name string) func(g Gomega) trackingv1alpha1.StorefrontStatus {
		return func(g Gomega) trackingv1alpha1.StorefrontStatus {
			var sf trackingv1alpha1.Storefront
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sf)).To(Succeed())
			return sf.Status
		}
	}
	ready := func(name string) func(g Gomega) metav1.Condition {
		return func(g Gomega) metav1.Condition {
			return condition(status(name)(g).Conditions, trackingv1alpha1.ConditionReady)
		}
	}

	It("is Ready (Valid) with its Secret and Offers, and the status never shows the secret", func() {
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, signingSecret(ns, "never-in-status-42"))).To(Succeed())
		sf := storefrontObj(ns, "acme", ns+".myshopify.com", "summer")
		Expect(k8sClient.Create(ctx, sf)).To(Succeed())
		Eventually(ready("acme")).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Valid")))
		st := status("acme")(Default)
		Expect(st.ObservedGeneration).To(Equal(int64(1)))
		Expect(condition(st.Conditions, trackingv1alpha1.ConditionStalled).Type).To(BeEmpty())
		Expect(st.Conditions[0].Message + st.Conditions[0].Reason).NotTo(ContainSubstring("never-in-status-42"))
	})

	It("is SecretMissing, naming the Secret and key, until the Secret appears", func() {
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, storefrontObj(ns, "acme", ns+".myshopify.com", "summer"))).To(Succeed())
		Eventually(ready("acme")).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "SecretMissing"),
			HaveField("Message", And(ContainSubstring(ns+"/shop-webhook"), ContainSubstring(`"secret"`)))))
		Expect(condition(status("acme")(Default).Conditions, trackingv1alpha1.ConditionStalled).Type).To(BeEmpty())
		Expect(k8sClient.Create(ctx, signingSecret(ns, "now-here"))).To(Succeed())
		Eventually(ready("acme")).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Valid")))
	})

	It("is OfferNotFound naming the missing offerRef, OfferNotReady for a disabled-token Offer, Ready once both are fine", func() {
		Expect(k8sClient.Create(ctx, signingSecret(ns, "s"))).To(Succeed())
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, storefrontObj(ns, "acme", ns+".myshopify.com", "summer", "winter"))).To(Succeed())
		Eventually(ready("acme")).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "OfferNotFound"),
			HaveField("Message", And(ContainSubstring("winter"), Not(ContainSubstring("summer"))))))
		winter := offerObj(ns, "winter", uniqueID(), true)
		winter.Spec.Tracking.TokenSecretRef = &trackingv1alpha1.SecretKeyRef{Name: "winter-token", Key: "token"}
		Expect(k8sClient.Create(ctx, winter)).To(Succeed())
		Eventually(ready("acme")).Should(And(HaveField("Reason", "OfferNotReady"), HaveField("Message", ContainSubstring("winter (TokenSecretMissing)"))))
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "winter-token"},
			StringData: map[string]string{"token": "t"}})).To(Succeed())
		Eventually(ready("acme")).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Valid")))
	})

	It("refuses a second Storefront of a shop at admission, naming the holder; with the webhook off the younger is DuplicateShop and Stalled", Serial, func() {
		Expect(k8sClient.Create(ctx, signingSecret(ns, "s"))).To(Succeed())
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		shop := ns + ".myshopify.com"
		Expect(k8sClient.Create(ctx, storefrontObj(ns, "first", shop, "summer"))).To(Succeed())
		Eventually(ready("first")).Should(HaveField("Reason", "Valid"))
		other := newNamespace(ctx) // anywhere in the cluster
		expectRefused(ctx, storefrontObj(other, "second", shop, "summer"), "Storefront "+ns+"/first")

		second := storefrontObj(ns, "second", shop, "summer")
		createWithoutWebhooks(ctx, second)
		Eventually(ready("second")).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "DuplicateShop"),
			HaveField("Message", ContainSubstring(ns+"/first"))))
		Expect(condition(status("second")(Default).Conditions, trackingv1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(status("first")(Default).Conditions, trackingv1alpha1.ConditionReady).Reason).To(Equal("Valid"))

		Expect(k8sClient.Delete(ctx, storefrontObj(ns, "first", shop))).To(Succeed())
		Eventually(ready("second")).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Valid")))
	})
})
