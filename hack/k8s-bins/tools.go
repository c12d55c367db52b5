//go:build tools

// Package k8sbins pins the Kubernetes control-plane binaries used by envtest,
// make dev and the end-to-end test. They are built from Go modules (no
// prebuilt downloads) by hack/build-k8s-bins.sh.
package k8sbins

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
