#!/usr/bin/env bash
# Builds Kubernetes binaries from Go modules (hack/k8s-bins pins
# k8s.io/kubernetes v1.37.2 and etcd v3.7.0) into bin/k8s — no prebuilt
# downloads. Skips what bin/k8s already holds for the pinned versions.
#
#   build-k8s-bins.sh          kube-apiserver, etcd, kubectl (envtest, make dev, make test)
#   build-k8s-bins.sh --node   the above and kubelet, kube-controller-manager,
#                              kube-scheduler, kube-proxy (hack/cluster)
#
# Prints the directory for KUBEBUILDER_ASSETS on the last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/k8s"
mod="$root/hack/k8s-bins"
k8s_version=v1.37.2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"
stamp=$(cat "$mod/go.mod" "$mod/go.sum" <(echo "$ldflags") <(go env GOVERSION) | sha256sum | cut -c1-16)

node=false
case "${1:-}" in
  "") ;;
  --node) node=true ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac

# One stamp per binary: a set is rebuilt only when the pins, the flags or Go change.
fresh() { [[ -x "$out/$1" && -f "$out/.stamp-$1" && "$(cat "$out/.stamp-$1")" == "$stamp" ]]; }
build() { # name package note
  fresh "$1" && return 0
  echo "==> building $1 from Go modules${3:+ ($3)}..." >&2
  local t0=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$1.tmp" "$2")
  mv "$out/$1.tmp" "$out/$1"
  echo "$stamp" >"$out/.stamp-$1"
  echo "    $1 built in $((SECONDS - t0)) s" >&2
}
mkdir -p "$out"
build etcd go.etcd.io/etcd/server/v3 "first time: a few minutes"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "first time: several minutes"
build kubectl k8s.io/kubernetes/cmd/kubectl
if $node; then
  build kubelet k8s.io/kubernetes/cmd/kubelet "first time: several minutes"
  build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
  build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
  build kube-proxy k8s.io/kubernetes/cmd/kube-proxy
fi
echo "$out"
