#!/usr/bin/env bash
# make test-cluster (and the last step of make test): start the cluster with
# make cluster, run test/cluster against it, and remove it again with make
# cluster-down whatever happened (KEEP_CLUSTER=1 keeps it for a look).
# The cluster needs root (network and mount namespaces, cgroups, iptables in
# the node's namespace); without root this fails and says SKIP_CLUSTER=1.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ $(id -u) -ne 0 ]]; then
  echo "the cluster test needs root (it starts a real node in network namespaces of its own)." >&2
  echo "On a machine without root, run make test with SKIP_CLUSTER=1 — and know that the deployment is then untested." >&2
  exit 1
fi
log="$root/bin/cluster-test.log"
mkdir -p "$root/bin"
down() {
  if [[ -n ${KEEP_CLUSTER:-} ]]; then echo "KEEP_CLUSTER set: the cluster stays up (make cluster-down removes it)"; return; fi
  make -s cluster-down >>"$log" 2>&1 || { echo "make cluster-down failed:"; tail -50 "$log"; return 1; }
}
trap down EXIT
start=$(date +%s)
echo "==> make cluster (log: bin/cluster-test.log)"
if ! make -s cluster 2>&1 | tee "$log" | grep --line-buffered -E '^(==>|promo-operator is)'; then
  echo "--- make cluster failed; last 150 lines of bin/cluster-test.log:"; tail -150 "$log"
  for f in "$root"/.cluster/logs/*.log; do [[ -f $f ]] && { echo "--- tail of $f"; tail -30 "$f"; }; done
  exit 1
fi
echo "==> cluster up in $(( $(date +%s) - start )) s; go test ./test/cluster"
rc=0
go test -count=1 -timeout 30m -v ./test/cluster >>"$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|cluster:|panic)' "$log"
if [[ $rc -ne 0 ]]; then echo "--- last 200 lines of bin/cluster-test.log:"; tail -200 "$log"; fi
exit $rc
