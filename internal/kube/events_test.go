package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

func TestChanged(t *testing.T) {
	offer := func(gen int64, ready bool) *trackingv1alpha1.Offer {
		o := &trackingv1alpha1.Offer{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "o", Generation: gen}}
		if ready {
			o.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
		}
		return o
	}
	secret := func(v string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s"}, Data: map[string][]byte{"token": []byte(v)}}
	}
	labelled := secret("a")
	labelled.Labels = map[string]string{"x": "y"}
	for _, tc := range []struct {
		name     string
		old, cur any
		want     bool
	}{
		{"status-only write", offer(1, false), offer(1, true), false},
		{"spec change", offer(1, false), offer(2, false), true},
		{"secret data", secret("a"), secret("b"), true},
		{"secret labels only", secret("a"), labelled, false},
		{"unknown", 1, 2, true},
	} {
		if got := Changed(tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: Changed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
