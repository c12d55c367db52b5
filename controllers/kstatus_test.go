package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// GitOps health: Flux's health checks, kubectl wait --for=jsonpath and
// cli-utils all compute kstatus from the objects as the API server serves
// them. These specs read our objects back from the API server and ask
// kstatus, as those tools do.
var _ = Describe("kstatus health", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	// served reads obj back from the API server as unstructured.
	served := func(obj client.Object) func(g Gomega) *unstructured.Unstructured {
		return func(g Gomega) *unstructured.Unstructured {
			u := &unstructured.Unstructured{}
			gvk, err := k8sClient.GroupVersionKindFor(obj)
			g.Expect(err).NotTo(HaveOccurred())
			u.SetGroupVersionKind(gvk)
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), u)).To(Succeed())
			return u
		}
	}
	kstatusOf := func(obj client.Object) func(g Gomega) *status.Result {
		return func(g Gomega) *status.Result {
			res, err := status.Compute(served(obj)(g))
			g.Expect(err).NotTo(HaveOccurred())
			return res
		}
	}
	current := HaveField("Status", status.CurrentStatus)
	inProgress := HaveField("Status", status.InProgressStatus)
	failed := HaveField("Status", status.FailedStatus)

	It("reads a Ready Offer and its accepted codes, Active or Scheduled, as Current", func() {
		offer := offerObj(ns, "summer", uniqueID(), true)
		Expect(k8sClient.Create(ctx, offer)).To(Succeed())
		active := codeObj(ns, "active", uniqueCode("KSA"), "summer", 42)
		Expect(k8sClient.Create(ctx, active)).To(Succeed())
		scheduled := codeObj(ns, "scheduled", uniqueCode("KSS"), "summer", 42)
		scheduled.Spec.StartDate = &metav1.Time{Time: metav1.Now().AddDate(1, 0, 0)}
		Expect(k8sClient.Create(ctx, scheduled)).To(Succeed())
		expectState(ctx, ns, "active", trackingv1alpha1.StateActive)
		expectState(ctx, ns, "scheduled", trackingv1alpha1.StateScheduled)
		Eventually(kstatusOf(offer)).Should(current)
		Eventually(kstatusOf(active)).Should(current)
		Eventually(kstatusOf(scheduled)).Should(current)
	})

	It("reads a rejected code as Failed, saying why, and as Current once it holds the code", Serial, func() {
		code := uniqueCode("KSR")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		holder := codeObj(ns, "holder", code, "summer", 42)
		Expect(k8sClient.Create(ctx, holder)).To(Succeed())
		expectState(ctx, ns, "holder", trackingv1alpha1.StateActive)
		intruder := codeObj(ns, "intruder", code, "summer", 7)
		createWithoutWebhooks(ctx, intruder)
		expectState(ctx, ns, "intruder", trackingv1alpha1.StateRejected)
		Eventually(kstatusOf(intruder)).Should(And(failed,
			HaveField("Message", And(ContainSubstring("affiliate 42"), ContainSubstring(ns+"/holder")))))
		Eventually(kstatusOf(holder)).Should(current)

		Expect(k8sClient.Delete(ctx, holder)).To(Succeed())
		expectState(ctx, ns, "intruder", trackingv1alpha1.StateActive)
		Eventually(kstatusOf(intruder)).Should(current)
		var pc trackingv1alpha1.PromoCode
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(intruder), &pc)).To(Succeed())
		Expect(condition(pc.Status.Conditions, trackingv1alpha1.ConditionStalled).Type).To(BeEmpty(), "Stalled is removed once the code is accepted")
	})

	It("reads an Offer whose id an older Offer owns as Failed, and one waiting for its token Secret as InProgress", Serial, func() {
		id := uniqueID()
		first := offerObj(ns, "first", id, true)
		Expect(k8sClient.Create(ctx, first)).To(Succeed())
		Eventually(kstatusOf(first)).Should(current)
		second := offerObj(ns, "second", id, true)
		createWithoutWebhooks(ctx, second)
		Eventually(kstatusOf(second)).Should(And(failed, HaveField("Message", ContainSubstring(ns+"/first"))))

		vip := offerObj(ns, "vip", uniqueID(), true)
		vip.Spec.Tracking.TokenSecretRef = &trackingv1alpha1.SecretKeyRef{Name: "vip-token", Key: "token"}
		Expect(k8sClient.Create(ctx, vip)).To(Succeed())
		Eventually(kstatusOf(vip)).Should(And(inProgress, HaveField("Message", ContainSubstring("vip-token"))))
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vip-token"},
			StringData: map[string]string{"token": "s3cret"}})).To(Succeed())
		Eventually(kstatusOf(vip)).Should(current)
	})

	It("reads an object not reconciled yet, or reconciled at an older generation, as InProgress", func() {
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		// The object as the API server returns it on create, before any
		// reconcile: status defaults to observedGeneration 0.
		u := &unstructured.Unstructured{}
		pc := codeObj(ns, "fresh", uniqueCode("KSF"), "summer", 42)
		pc.SetGroupVersionKind(trackingv1alpha1.GroupVersion.WithKind("PromoCode"))
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pc)
		Expect(err).NotTo(HaveOccurred())
		u.SetUnstructuredContent(obj)
		unstructured.RemoveNestedField(u.Object, "status")
		Expect(k8sClient.Create(ctx, u)).To(Succeed())
		Expect(u.Object).To(HaveKeyWithValue("status", HaveKeyWithValue("observedGeneration", BeEquivalentTo(0))))
		res, err := status.Compute(u)
		Expect(err).NotTo(HaveOccurred())
		Expect(res).To(And(inProgress, HaveField("Message", ContainSubstring("latest observed generation is 0"))))

		// Reconciled, it is Current; a spec change the controller has not
		// caught up with (generation ahead of status.observedGeneration and
		// of the conditions') is InProgress.
		expectState(ctx, ns, "fresh", trackingv1alpha1.StateActive)
		Eventually(kstatusOf(pc)).Should(current)
		lagging := served(pc)(Default)
		lagging.SetGeneration(lagging.GetGeneration() + 1)
		res, err = status.Compute(lagging)
		Expect(err).NotTo(HaveOccurred())
		Expect(res).To(inProgress)
	})
})
