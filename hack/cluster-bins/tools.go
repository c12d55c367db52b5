//go:build tools

// Package clusterbins pins the node add-ons of the single-node cluster of
// hack/cluster that are built from Go modules (no prebuilt downloads):
//
//   - CoreDNS, run as a Deployment in kube-system from a locally built image.
//   - kube-router, run on the node for NetworkPolicy enforcement only
//     (--run-firewall; no routing, no service proxy, no CNI). v2.1.0 is the
//     only version the module proxy serves here and has reported security
//     flaws; it is acceptable for a test-only policy enforcer on a throwaway
//     node whose traffic never leaves the machine, and must not be used for
//     anything else.
//
// Built by hack/cluster/build-bins.sh into bin/cluster.
package clusterbins

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
	_ "github.com/coredns/coredns"
)
