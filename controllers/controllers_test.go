package controllers

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/testutil/fixtures"
)

func offerObj(ns, name string, id int64, enabled bool) *trackingv1alpha1.Offer {
	return fixtures.Offer(ns, name, id, enabled)
}

func codeObj(ns, name, code, offer string, affiliate int64) *trackingv1alpha1.PromoCode {
	return fixtures.PromoCode(ns, name, code, offer, affiliate)
}

// uniqueID gives each spec its own offer ids: Offer ids are cluster-wide.
var nextID int64 = 1000

func uniqueID() int64 { nextID++; return nextID }

func uniqueCode(prefix string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""))
}

func codeStatus(ctx context.Context, ns, name string) func(g Gomega) trackingv1alpha1.PromoCodeStatus {
	return func(g Gomega) trackingv1alpha1.PromoCodeStatus {
		var pc trackingv1alpha1.PromoCode
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pc)).To(Succeed())
		g.Expect(pc.Status.ObservedGeneration).To(Equal(pc.Generation))
		return pc.Status
	}
}

func expectState(ctx context.Context, ns, name string, state trackingv1alpha1.PromoCodeState) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(codeStatus(ctx, ns, name)(g).State).To(Equal(state))
	}).WithTimeout(20 * time.Second).Should(Succeed())
}

func condition(conds []metav1.Condition, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

var _ = Describe("API validation", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	DescribeTable("malformed codes are refused by the API server with a clear message",
		func(code string) {
			err := k8sClient.Create(ctx, codeObj(ns, "bad", code, "o", 1))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(Or(ContainSubstring("Latin letters"), ContainSubstring("spec.code")))
		},
		Entry("a dash", "PROMO-22"),
		Entry("Cyrillic", "промо"),
		Entry("a space", "PROMO 22"),
		Entry("65 characters", strings.Repeat("A", 65)),
		Entry("empty", ""),
	)

	It("refuses endDate not after startDate", func() {
		pc := codeObj(ns, "dates", "DATES1", "o", 1)
		start := metav1.NewTime(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))
		pc.Spec.StartDate, pc.Spec.EndDate = &start, &start
		err := k8sClient.Create(ctx, pc)
		Expect(err).To(MatchError(ContainSubstring("endDate must be after startDate")))
	})

	It("keeps code, offerRef and affiliateID immutable and says to recreate", func() {
		Expect(k8sClient.Create(ctx, codeObj(ns, "imm", uniqueCode("IMM"), "o", 1))).To(Succeed())
		for _, mutate := range []func(*trackingv1alpha1.PromoCode){
			func(pc *trackingv1alpha1.PromoCode) { pc.Spec.Code = "OTHER1" },
			func(pc *trackingv1alpha1.PromoCode) { pc.Spec.OfferRef.Name = "other" },
			func(pc *trackingv1alpha1.PromoCode) { pc.Spec.AffiliateID = 2 },
		} {
			// Retried: the controller's status writes may bump resourceVersion.
			Eventually(func() error { return updateCode(ctx, ns, "imm", mutate) }).
				Should(MatchError(ContainSubstring("delete the PromoCode and create a new one")))
		}
		Eventually(func() error {
			return updateCode(ctx, ns, "imm", func(pc *trackingv1alpha1.PromoCode) { pc.Spec.Description = "dates and description may change" })
		}).Should(Succeed())
	})

	It("refuses goals with two defaults or duplicate aliases, and money that is neither fixed nor percent", func() {
		o := offerObj(ns, "goals", uniqueID(), true)
		o.Spec.Goals = append(o.Spec.Goals, trackingv1alpha1.Goal{ID: 2, Alias: "sale", Default: true,
			Payout: trackingv1alpha1.Money{Fixed: ptr.To("1")}, Revenue: trackingv1alpha1.Money{Fixed: ptr.To("1")}})
		err := k8sClient.Create(ctx, o)
		Expect(err).To(MatchError(ContainSubstring("exactly one goal must have default: true")))
		Expect(err).To(MatchError(ContainSubstring("goal aliases must be unique")))

		o = offerObj(ns, "money", uniqueID(), true)
		o.Spec.Goals[0].Payout = trackingv1alpha1.Money{Fixed: ptr.To("1.00"), Percent: ptr.To("5")}
		Expect(k8sClient.Create(ctx, o)).To(MatchError(ContainSubstring("set exactly one of fixed")))
		o.Spec.Goals[0].Payout = trackingv1alpha1.Money{Fixed: ptr.To("1,00")}
		Expect(k8sClient.Create(ctx, o)).To(MatchError(ContainSubstring("fixed")))
	})
})

var _ = Describe("PromoCode resolution", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	It("accepts one affiliate's code on two offers and refuses it twice on one offer", func() {
		code := uniqueCode("REUSE")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, offerObj(ns, "winter", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "a", code, "summer", 42))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "b", strings.ToLower(code), "winter", 42))).To(Succeed())
		expectState(ctx, ns, "a", trackingv1alpha1.StateActive)
		expectState(ctx, ns, "b", trackingv1alpha1.StateActive)

		expectRefused(ctx, codeObj(ns, "c", code, "summer", 42), "already on Offer summer", ns+"/a")
	})

	It("refuses another affiliate's code at admission, naming the holder", func() {
		code := uniqueCode("OWN")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "mine", code, "summer", 42))).To(Succeed())
		expectState(ctx, ns, "mine", trackingv1alpha1.StateActive) // in the webhook's cache
		other := newNamespace(ctx)
		expectRefused(ctx, codeObj(other, "theirs", code, "summer", 7), "belongs to affiliate 42", ns+"/mine")
	})

	It("with the webhook off, the controller rejects the later code and promotes it when the holder goes", Serial, func() {
		code := uniqueCode("AUTH")
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "holder", code, "summer", 42))).To(Succeed())
		expectState(ctx, ns, "holder", trackingv1alpha1.StateActive)

		createWithoutWebhooks(ctx, codeObj(ns, "intruder", code, "summer", 7))
		expectState(ctx, ns, "intruder", trackingv1alpha1.StateRejected)
		Eventually(func(g Gomega) {
			st := codeStatus(ctx, ns, "intruder")(g)
			acc := condition(st.Conditions, trackingv1alpha1.ConditionAccepted)
			g.Expect(acc.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(acc.Reason).To(Equal("CodeOwnedByAnotherAffiliate"))
			g.Expect(acc.Message).To(ContainSubstring(ns + "/holder"))
			g.Expect(condition(st.Conditions, trackingv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		}).Should(Succeed())

		Expect(k8sClient.Delete(ctx, codeObj(ns, "holder", code, "summer", 42))).To(Succeed())
		expectState(ctx, ns, "intruder", trackingv1alpha1.StateActive)
	})

	It("makes codes Inactive when promo codes are disabled or the offer is deleted, and restores them", func() {
		code := uniqueCode("TOGGLE")
		id := uniqueID()
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", id, true))).To(Succeed())
		Expect(k8sClient.Create(ctx, codeObj(ns, "c", code, "summer", 42))).To(Succeed())
		expectState(ctx, ns, "c", trackingv1alpha1.StateActive)

		setEnabled := func(enabled bool) {
			Eventually(func() error {
				var o trackingv1alpha1.Offer
				if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "summer"}, &o); err != nil {
					return err
				}
				o.Spec.Tracking.PromoCodes.Enabled = enabled
				return k8sClient.Update(ctx, &o)
			}).Should(Succeed())
		}
		setEnabled(false)
		expectState(ctx, ns, "c", trackingv1alpha1.StateInactive)
		Eventually(func(g Gomega) {
			g.Expect(condition(codeStatus(ctx, ns, "c")(g).Conditions, trackingv1alpha1.ConditionReady).Reason).To(Equal("PromoCodesDisabled"))
		}).Should(Succeed())
		setEnabled(true)
		expectState(ctx, ns, "c", trackingv1alpha1.StateActive)

		Expect(k8sClient.Delete(ctx, offerObj(ns, "summer", id, true))).To(Succeed())
		expectState(ctx, ns, "c", trackingv1alpha1.StateInactive)
		Eventually(func(g Gomega) {
			g.Expect(condition(codeStatus(ctx, ns, "c")(g).Conditions, trackingv1alpha1.ConditionReady).Reason).To(Equal("OfferNotFound"))
		}).Should(Succeed())
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", id, true))).To(Succeed())
		expectState(ctx, ns, "c", trackingv1alpha1.StateActive)
	})

	It("turns a code Scheduled, then Active, then Expired on time", Serial, func() {
		DeferCleanup(clock.reset)
		Expect(k8sClient.Create(ctx, offerObj(ns, "summer", uniqueID(), true))).To(Succeed())
		pc := codeObj(ns, "timed", uniqueCode("TIMED"), "summer", 42)
		// Whole seconds: the API stores RFC 3339 timestamps. The window is an
		// hour ahead; the reconciler's injected clock moves into it.
		start := metav1.NewTime(time.Now().Add(time.Hour).Truncate(time.Second))
		end := metav1.NewTime(start.Add(time.Hour))
		pc.Spec.StartDate, pc.Spec.EndDate = &start, &end
		Expect(k8sClient.Create(ctx, pc)).To(Succeed())
		expectState(ctx, ns, "timed", trackingv1alpha1.StateScheduled)
		clock.set(start.Time) // inclusive
		touchCode(ctx, ns, "timed")
		expectState(ctx, ns, "timed", trackingv1alpha1.StateActive)
		clock.set(end.Time) // exclusive
		touchCode(ctx, ns, "timed")
		expectState(ctx, ns, "timed", trackingv1alpha1.StateExpired)
	})
})

var _ = Describe("Offer resolution", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	readyOf := func(name string) func(g Gomega) metav1.Condition {
		return func(g Gomega) metav1.Condition {
			var o trackingv1alpha1.Offer
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &o)).To(Succeed())
			g.Expect(o.Status.ObservedGeneration).To(Equal(o.Generation))
			return condition(o.Status.Conditions, trackingv1alpha1.ConditionReady)
		}
	}

	It("refuses a taken offer id at admission; with the webhook off the younger Offer is DuplicateOfferID", Serial, func() {
		id := uniqueID()
		Expect(k8sClient.Create(ctx, offerObj(ns, "first", id, true))).To(Succeed())
		Eventually(readyOf("first")).Should(HaveField("Reason", "Valid"))
		Expect(k8sClient.Create(ctx, offerObj(ns, "second", id, true))).To(MatchError(ContainSubstring("offer id")))

		createWithoutWebhooks(ctx, offerObj(ns, "second", id, true))
		Eventually(readyOf("second")).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "DuplicateOfferID"),
			HaveField("Message", ContainSubstring(ns+"/first"))))
		Expect(k8sClient.Delete(ctx, offerObj(ns, "first", id, true))).To(Succeed())
		Eventually(readyOf("second")).Should(HaveField("Reason", "Valid"))
	})

	It("is not Ready while its token Secret is missing", func() {
		o := offerObj(ns, "vip", uniqueID(), true)
		o.Spec.Tracking.TokenSecretRef = &trackingv1alpha1.SecretKeyRef{Name: "vip-token", Key: "token"}
		Expect(k8sClient.Create(ctx, o)).To(Succeed())
		Eventually(readyOf("vip")).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "TokenSecretMissing")))
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vip-token"},
			StringData: map[string]string{"token": "s3cret"}})).To(Succeed())
		Eventually(readyOf("vip")).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Valid")))
	})
})

// updateCode reads a PromoCode, mutates it and updates it; a conflict is
// returned as is, for Eventually to retry.
func updateCode(ctx context.Context, ns, name string, mutate func(*trackingv1alpha1.PromoCode)) error {
	var pc trackingv1alpha1.PromoCode
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pc); err != nil {
		return err
	}
	mutate(&pc)
	return k8sClient.Update(ctx, &pc)
}

// createWithoutWebhooks creates obj, which the webhooks would refuse, with
// the validating webhook configurations removed from the API server — as when
// they are off or unreachable — and puts them back. It waits until the API
// server has dropped them (a dry-run create of obj passes) before the one real
// create, and until it enforces them again (a dry-run twin of obj under another
// name is refused) before returning. Specs calling it must be Serial.
func createWithoutWebhooks(ctx context.Context, obj client.Object) {
	GinkgoHelper()
	var list admissionregistrationv1.ValidatingWebhookConfigurationList
	Expect(k8sClient.List(ctx, &list)).To(Succeed())
	saved := list.DeepCopy().Items
	for i := range list.Items {
		Expect(k8sClient.Delete(ctx, &list.Items[i])).To(Succeed())
	}
	Eventually(func() error { return k8sClient.Create(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll) }).
		WithTimeout(20 * time.Second).Should(Succeed())
	Expect(k8sClient.Create(ctx, obj)).To(Succeed())
	for i := range saved {
		w := saved[i]
		w.ResourceVersion, w.UID, w.CreationTimestamp = "", "", metav1.Time{}
		Expect(k8sClient.Create(ctx, &w)).To(Succeed())
	}
	twin := obj.DeepCopyObject().(client.Object)
	twin.SetName(obj.GetName() + "-twin")
	twin.SetResourceVersion("")
	twin.SetUID("")
	twin.SetCreationTimestamp(metav1.Time{})
	Eventually(func() error { return k8sClient.Create(ctx, twin.DeepCopyObject().(client.Object), client.DryRunAll) }).
		WithTimeout(20 * time.Second).Should(MatchError(ContainSubstring("denied the request")))
}

// expectRefused: the webhook reads the manager's cache, which learns of the
// holder a moment after the API server does (a written status does not
// prove that moment passed: the suite saw about one run in two admit here).
// Dry-run creates, which store nothing, are polled until the webhook refuses;
// then the real create is tried once and must be refused with the same words.
func expectRefused(ctx context.Context, obj client.Object, says ...string) {
	GinkgoHelper()
	matchers := make([]types.GomegaMatcher, len(says))
	for i, s := range says {
		matchers[i] = ContainSubstring(s)
	}
	Eventually(func() error { return k8sClient.Create(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll) }).
		WithTimeout(15 * time.Second).Should(MatchError(And(matchers...)))
	Expect(k8sClient.Create(ctx, obj)).To(MatchError(And(matchers...)))
}

// touchCode writes an annotation on a PromoCode, so its reconciler runs again
// (the injected clock moved; nothing else would wake it before its requeue).
func touchCode(ctx context.Context, ns, name string) {
	GinkgoHelper()
	Eventually(func() error {
		return updateCode(ctx, ns, name, func(pc *trackingv1alpha1.PromoCode) {
			if pc.Annotations == nil {
				pc.Annotations = map[string]string{}
			}
			pc.Annotations["test/touched"] = time.Now().Format(time.RFC3339Nano)
		})
	}).Should(Succeed())
}
