package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

func setStatusOf(ctx context.Context, ns, name string) func(g Gomega) trackingv1alpha1.PromoCodeSetStatus {
	return func(g Gomega) trackingv1alpha1.PromoCodeSetStatus {
		var s trackingv1alpha1.PromoCodeSet
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s)).To(Succeed())
		g.Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))
		return s.Status
	}
}

// updateSet reads a PromoCodeSet, mutates it and updates it; a conflict is
// returned as is, for Eventually to retry.
func updateSet(ctx context.Context, ns, name string, mutate func(*trackingv1alpha1.PromoCodeSet)) error {
	var s trackingv1alpha1.PromoCodeSet
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return err
	}
	mutate(&s)
	return k8sClient.Update(ctx, &s)
}

var _ = Describe("PromoCodeSet", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	It("counts its entries and is Ready when every entry is accepted and servable", func() {
		id := uniqueID()
		a, b, c := uniqueCode("SETA"), uniqueCode("SETB"), uniqueCode("SETC")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", id, true))).To(Succeed())
		later := metav1.NewTime(time.Now().Add(24 * time.Hour).Truncate(time.Second))
		scheduled := fixtures.Entry(c, 43)
		scheduled.StartDate = &later
		set := fixtures.PromoCodeSet(ns, "influencers", "summer", fixtures.Entry(a, 42), fixtures.Entry(strings.ToLower(b), 42), scheduled)
		Expect(k8sClient.Create(ctx, set)).To(Succeed())
		Eventually(func(g Gomega) {
			st := setStatusOf(ctx, ns, "influencers")(g)
			g.Expect(st.Codes).To(Equal(int32(3)))
			g.Expect(st.Active).To(Equal(int32(2)), "the scheduled entry is not active yet")
			g.Expect(st.Rejected).To(BeZero())
			g.Expect(st.RejectedCodes).To(BeEmpty())
			g.Expect(st.OfferID).To(Equal(id))
			ready := condition(st.Conditions, trackingv1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(ready.Reason).To(Equal("Routed"))
			g.Expect(ready.ObservedGeneration).To(Equal(int64(1)))
			g.Expect(condition(st.Conditions, trackingv1alpha1.ConditionStalled).Type).To(BeEmpty())
			// Zero counts are stored, not left out: kubectl's columns show 0.
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(trackingv1alpha1.GroupVersion.WithKind("PromoCodeSet"))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "influencers"}, u)).To(Succeed())
			rejected, found, err := unstructured.NestedInt64(u.Object, "status", "rejected")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(found).To(BeTrue(), "status.rejected is stored")
			g.Expect(rejected).To(BeZero())
		}).WithTimeout(20 * time.Second).Should(Succeed())

		By("disabling promo codes on the offer, the set is not Ready and nothing is active")
		Eventually(func() error {
			var o trackingv1alpha1.Offer
			if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "summer"}, &o); err != nil {
				return err
			}
			o.Spec.Tracking.PromoCodes.Enabled = false
			return k8sClient.Update(ctx, &o)
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			st := setStatusOf(ctx, ns, "influencers")(g)
			g.Expect(st.Active).To(BeZero())
			g.Expect(condition(st.Conditions, trackingv1alpha1.ConditionReady).Reason).To(Equal("PromoCodesDisabled"))
		}).WithTimeout(20 * time.Second).Should(Succeed())
	})

	It("refuses at admission new entries that would lose, naming the holder, and PromoCodes losing to an entry", func() {
		held, mine := uniqueCode("HELD"), uniqueCode("MINE")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "holder", held, "summer", 42))).To(Succeed())
		expectState(ctx, ns, "holder", trackingv1alpha1.StateActive)

		By("a create whose second entry is another affiliate's code")
		expectRefused(ctx, fixtures.PromoCodeSet(ns, "bad", "summer", fixtures.Entry(mine, 7), fixtures.Entry(strings.ToLower(held), 7)),
			"spec.codes[1]", "belongs to affiliate 42", "PromoCode "+ns+"/holder")

		By("an update adding it to an admitted set")
		Expect(k8sClient.Create(ctx, fixtures.PromoCodeSet(ns, "good", "summer", fixtures.Entry(mine, 7)))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(condition(setStatusOf(ctx, ns, "good")(g).Conditions, trackingv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(20 * time.Second).Should(Succeed())
		Eventually(func() error {
			return updateSet(ctx, ns, "good", func(s *trackingv1alpha1.PromoCodeSet) {
				s.Spec.Codes = append(s.Spec.Codes, fixtures.Entry(held, 7))
			})
		}).Should(MatchError(And(ContainSubstring("spec.codes[1]"), ContainSubstring(ns+"/holder"))))

		By("a folded duplicate inside the set and an empty effective window")
		start := metav1.NewTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
		early := metav1.NewTime(start.Add(-time.Hour))
		dated := fixtures.Entry(uniqueCode("WIN"), 7)
		dated.EndDate = &early
		s := fixtures.PromoCodeSet(ns, "inner", "summer", fixtures.Entry(mine+"X", 7), fixtures.Entry(strings.ToLower(mine)+"x", 7), dated)
		s.Spec.StartDate = &start
		Expect(k8sClient.Create(ctx, s)).To(MatchError(And(ContainSubstring("2 new entries"), ContainSubstring("spec.codes[1]"),
			ContainSubstring("already on Offer summer"), ContainSubstring("spec.codes[2]"), ContainSubstring("effective endDate"))))

		By("the same code twice, as written (spec.codes is an atomic list: the schema cannot refuse it, the webhook does)")
		twice := fixtures.Entry(mine+"Y", 7)
		Expect(k8sClient.Create(ctx, fixtures.PromoCodeSet(ns, "twice", "summer", twice, twice))).To(MatchError(And(
			ContainSubstring("1 new entries"), ContainSubstring("spec.codes[1]"), ContainSubstring("already on Offer summer"))))

		By("a folded duplicate added before an existing entry")
		Eventually(func() error {
			return updateSet(ctx, ns, "good", func(s *trackingv1alpha1.PromoCodeSet) {
				s.Spec.Codes = append([]trackingv1alpha1.PromoCodeSetEntry{fixtures.Entry(strings.ToLower(mine), 7)}, s.Spec.Codes...)
			})
		}).Should(MatchError(And(ContainSubstring("spec.codes[0]"), ContainSubstring("same code as spec.codes[1]"))))

		By("a PromoCode of another affiliate on a code the set holds")
		expectRefused(ctx, codeObj(ns, "late", strings.ToLower(mine), "summer", 9), "belongs to affiliate 7", "PromoCodeSet "+ns+"/good")
	})

	It("with the webhook off, marks losing entries in rejectedCodes, and promotes them when the holder goes", Serial, func() {
		held, dup, win := uniqueCode("AUTHH"), uniqueCode("AUTHD"), uniqueCode("AUTHW")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "holder", held, "summer", 42))).To(Succeed())
		expectState(ctx, ns, "holder", trackingv1alpha1.StateActive)

		start := metav1.NewTime(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
		early := metav1.NewTime(start.Add(-time.Hour))
		dated := fixtures.Entry(win, 7)
		dated.EndDate = &early
		s := fixtures.PromoCodeSet(ns, "imported", "summer",
			fixtures.Entry(dup, 7), fixtures.Entry(held, 7), fixtures.Entry(strings.ToLower(dup), 7), dated)
		s.Spec.StartDate = &start
		createWithoutWebhooks(ctx, s)
		Eventually(func(g Gomega) {
			st := setStatusOf(ctx, ns, "imported")(g)
			g.Expect(st.Codes).To(Equal(int32(4)))
			g.Expect(st.Rejected).To(Equal(int32(3)))
			g.Expect(st.RejectedCodes).To(HaveLen(3))
			g.Expect(st.RejectedCodes[0]).To(And(HaveField("Code", held), HaveField("Reason", "CodeOwnedByAnotherAffiliate"),
				HaveField("Message", And(ContainSubstring("PromoCode "+ns+"/holder"), ContainSubstring("affiliate 42")))))
			g.Expect(st.RejectedCodes[1]).To(And(HaveField("Code", strings.ToLower(dup)), HaveField("Reason", "DuplicateCode"),
				HaveField("Message", ContainSubstring("PromoCodeSet "+ns+"/imported"))))
			g.Expect(st.RejectedCodes[2]).To(And(HaveField("Code", win), HaveField("Reason", "InvalidSpec")))
			ready := condition(st.Conditions, trackingv1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal("CodesRejected"))
			g.Expect(condition(st.Conditions, trackingv1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(20 * time.Second).Should(Succeed())

		By("deleting the holder promotes the entry")
		Expect(k8sClient.Delete(ctx, codeObj(ns, "holder", held, "summer", 42))).To(Succeed())
		Eventually(func(g Gomega) {
			st := setStatusOf(ctx, ns, "imported")(g)
			g.Expect(st.Rejected).To(Equal(int32(2)))
			g.Expect(st.RejectedCodes).NotTo(ContainElement(HaveField("Code", held)))
		}).WithTimeout(20 * time.Second).Should(Succeed())
	})

	It("re-decides an edited entry: a changed window and a changed code", func() {
		a, b := uniqueCode("EDITA"), uniqueCode("EDITB")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, fixtures.PromoCodeSet(ns, "s", "summer", fixtures.Entry(a, 42), fixtures.Entry(b, 42)))).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(setStatusOf(ctx, ns, "s")(g).Active).To(Equal(int32(2))) }).WithTimeout(20 * time.Second).Should(Succeed())

		past := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
		Eventually(func() error {
			return updateSet(ctx, ns, "s", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[1].EndDate = &past })
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			st := setStatusOf(ctx, ns, "s")(g)
			g.Expect(st.Codes).To(Equal(int32(2)))
			g.Expect(st.Active).To(Equal(int32(1)), "the edited entry expired")
			g.Expect(condition(st.Conditions, trackingv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(20 * time.Second).Should(Succeed())

		By("renaming an entry frees its old code for another affiliate")
		renamed := uniqueCode("EDITC")
		Eventually(func() error {
			return updateSet(ctx, ns, "s", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[0].Code = renamed })
		}).Should(Succeed())
		Eventually(func(g Gomega) { g.Expect(setStatusOf(ctx, ns, "s")(g).Active).To(Equal(int32(1))) }).WithTimeout(20 * time.Second).Should(Succeed())
		Eventually(func() error {
			return k8sClient.Create(ctx, codeObj(ns, "freed", a, "summer", 9), client.DryRunAll)
		}).WithTimeout(15 * time.Second).Should(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "freed", a, "summer", 9))).To(Succeed())
		expectState(ctx, ns, "freed", trackingv1alpha1.StateActive)
	})

	It("admits, counts and re-decides a full 5,000-entry set", func() {
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		prefix := uniqueCode("F")
		entries := make([]trackingv1alpha1.PromoCodeSetEntry, trackingv1alpha1.MaxPromoCodeSetEntries)
		for i := range entries {
			entries[i] = fixtures.Entry(fmt.Sprintf("%s%04d", prefix, i), 42)
		}
		start := time.Now()
		Expect(k8sClient.Create(ctx, fixtures.PromoCodeSet(ns, "full", "summer", entries...))).To(Succeed())
		admitted := time.Now()
		Eventually(func(g Gomega) {
			st := setStatusOf(ctx, ns, "full")(g)
			g.Expect(st.Codes).To(Equal(int32(len(entries))))
			g.Expect(st.Active).To(Equal(int32(len(entries))))
			g.Expect(condition(st.Conditions, trackingv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed()) // each read decodes 5,000 entries
		GinkgoWriter.Printf("5,000-entry set: admitted in %s, Ready %s later\n", admitted.Sub(start), time.Since(admitted))

		By("another affiliate's PromoCode on one of its codes is refused naming the set; an edited entry is re-decided")
		expectRefused(ctx, codeObj(ns, "late", strings.ToLower(entries[4321].Code), "summer", 7), "PromoCodeSet "+ns+"/full", "affiliate 42")
		past := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
		Eventually(func() error {
			return updateSet(ctx, ns, "full", func(s *trackingv1alpha1.PromoCodeSet) { s.Spec.Codes[4321].EndDate = &past })
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(setStatusOf(ctx, ns, "full")(g).Active).To(Equal(int32(len(entries) - 1)))
		}).WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	})

	It("deleting a set promotes the next holder of its codes", Serial, func() {
		code := uniqueCode("NEXT")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, fixtures.PromoCodeSet(ns, "first", "summer", fixtures.Entry(code, 42)))).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(setStatusOf(ctx, ns, "first")(g).Active).To(Equal(int32(1))) }).WithTimeout(20 * time.Second).Should(Succeed())

		createWithoutWebhooks(ctx, codeObj(ns, "next", strings.ToLower(code), "summer", 7))
		expectState(ctx, ns, "next", trackingv1alpha1.StateRejected)
		Eventually(func(g Gomega) {
			acc := condition(codeStatus(ctx, ns, "next")(g).Conditions, trackingv1alpha1.ConditionAccepted)
			g.Expect(acc.Reason).To(Equal("CodeOwnedByAnotherAffiliate"))
			g.Expect(acc.Message).To(ContainSubstring("PromoCodeSet " + ns + "/first"))
		}).Should(Succeed())

		Expect(k8sClient.Delete(ctx, fixtures.PromoCodeSet(ns, "first", "summer"))).To(Succeed())
		expectState(ctx, ns, "next", trackingv1alpha1.StateActive)
		Eventually(func(g Gomega) {
			g.Expect(condition(codeStatus(ctx, ns, "next")(g).Conditions, trackingv1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
		}).Should(Succeed())
	})
})
