#!/usr/bin/env bash
# Builds everything the single-node cluster runs that comes from Go modules,
# skipping what is already built for the pinned versions:
#   bin/k8s/{kube-apiserver,etcd,kubectl,kubelet,kube-controller-manager,kube-scheduler,kube-proxy}
#                                  (hack/build-k8s-bins.sh --node; pins in hack/k8s-bins)
#   bin/cluster/{coredns,kube-router,pause}   (pins in hack/cluster-bins; pause from hack/images/pause)
#   bin/cluster/images/{pause,coredns}.tar    (go run ./hack/images; the .ref beside each names the image)
# Progress goes to stderr ("==> ..."); nothing on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/bin/cluster"
mod="$root/hack/cluster-bins"
mkdir -p "$out/images"

bash "$root/hack/build-k8s-bins.sh" --node >/dev/null

stamp=$(cat "$mod/go.mod" "$mod/go.sum" <(go env GOVERSION) | sha256sum | cut -c1-16)
fresh() { [[ -x "$out/$1" && -f "$out/.stamp-$1" && "$(cat "$out/.stamp-$1")" == "$2" ]]; }
build() { # name stamp dir package note
  fresh "$1" "$2" && return 0
  echo "==> building $1 from Go modules${5:+ ($5)}..." >&2
  local t0=$SECONDS
  (cd "$3" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/$1.tmp" "$4")
  mv "$out/$1.tmp" "$out/$1"
  echo "$2" >"$out/.stamp-$1"
  echo "    $1 built in $((SECONDS - t0)) s" >&2
}
# CoreDNS's version string comes from its own source; nothing to inject.
build coredns "$stamp" "$mod" github.com/coredns/coredns "first time: a few minutes"
# kube-router v2.1.0: reported security flaws, the only version served; a
# test-only NetworkPolicy enforcer here (see hack/cluster-bins/tools.go).
build kube-router "$stamp" "$mod" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "first time: a few minutes"
pstamp=$(cat "$root/hack/images/pause/"*.go "$root/go.mod" <(go env GOVERSION) | sha256sum | cut -c1-16)
build pause "$pstamp" "$root" ./hack/images/pause

# Images: rebuilt when the binary or the image tool changed.
image() { # name binary
  local s
  s=$(cat "$2" "$root/hack/images/"*.go "$root/go.sum" | sha256sum | cut -c1-16)
  if [[ -f "$out/images/$1.tar" && -f "$out/images/$1.ref" && "$(cat "$out/images/.stamp-$1" 2>/dev/null)" == "$s" ]]; then return 0; fi
  echo "==> writing image $1 (go run ./hack/images)..." >&2
  (cd "$root" && go run ./hack/images -bin "$2" -ref "promo-operator/$1" -out "$out/images/$1.tar" >/dev/null)
  echo "$s" >"$out/images/.stamp-$1"
}
image pause "$out/pause"
image coredns "$out/coredns"
