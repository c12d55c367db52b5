package kube

import (
	"bytes"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// Changed reports whether an update from old to cur can change a routing
// decision, as Contour's internal/k8s helpers decide before acting: a Secret
// whose Data changed (the cache holds hashes, see HashSecretData), or an
// object whose generation moved (the API server bumps it on spec changes,
// never on status writes). Anything else — status-only writes, resyncs,
// label edits — is ignored. Objects of unknown shape count as changed.
func Changed(old, cur any) bool {
	if os, ok := old.(*corev1.Secret); ok {
		cs, ok := cur.(*corev1.Secret)
		return !ok || !maps.EqualFunc(os.Data, cs.Data, bytes.Equal)
	}
	oo, ok1 := old.(metav1.Object)
	co, ok2 := cur.(metav1.Object)
	if !ok1 || !ok2 {
		return true
	}
	return oo.GetGeneration() != co.GetGeneration()
}

// SecretDataChanged passes creations, deletions and the updates of a Secret
// that change its Data; the watch of token Secrets uses it.
var SecretDataChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return Changed(e.ObjectOld, e.ObjectNew) }}
