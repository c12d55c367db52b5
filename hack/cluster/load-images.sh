#!/usr/bin/env bash
# Imports image tarballs (docker-archive or OCI, e.g. bin/images/*.tar from
# make images) into the running node's containerd, namespace k8s.io, where
# kubelet finds them (pods use imagePullPolicy Never/IfNotPresent or a fixed
# tag: nothing can be pulled). Prints each imported image name on stdout.
#   load-images.sh FILE...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need_root
(($#)) || { echo "usage: $0 FILE.tar..." >&2; exit 2; }
alive containerd || { echo "ERROR: the node's containerd is not running (hack/cluster/up.sh first)" >&2; exit 1; }
for f in "$@"; do
  [[ -f $f ]] || { echo "ERROR: no such file: $f" >&2; exit 1; }
  abs=$(realpath "$f")
  info "importing $(basename "$f")"
  in_node ctr --address /run/containerd/containerd.sock -n k8s.io images import "$abs" \
    | sed -n 's/^unpacking \([^ ]*\) .*/\1/p' || die "importing $f failed" containerd
done
