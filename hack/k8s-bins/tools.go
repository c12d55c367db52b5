//go:build tools

// Package k8sbins pins the Kubernetes binaries built from Go modules (no
// prebuilt downloads) by hack/build-k8s-bins.sh: the control plane used by
// envtest, make dev and the end-to-end test (kube-apiserver, etcd, kubectl),
// and the node components of the single-node cluster of hack/cluster
// (kubelet, kube-controller-manager, kube-scheduler, kube-proxy).
package k8sbins

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
