#!/usr/bin/env bash
# Tears the single-node cluster down and restores the host (idempotent):
# stops every component by PID, kills the containers and our shims, ends the
# node's mount namespace, stops PostgreSQL, deletes the network namespace
# (with it the veth pair and the host routes through it), restores the
# sysctls kubelet changed, removes the pod cgroups, and checks that nothing of
# ours is left: no process, no mount, no link, no route.
#
# State: .cluster/ is removed except .cluster/logs (kept for a post-mortem;
# the next up moves it to logs.prev). Built binaries and images in bin/ are
# kept, so the next up starts in seconds.
#   down.sh            as above
#   down.sh --keep     keep .cluster/ state (etcd, PostgreSQL data, PVs, certs):
#                      the next up starts the same cluster again
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need_root
keep=false
case "${1:-}" in "") ;; --keep) keep=true ;; *) echo "usage: $0 [--keep]" >&2; exit 2 ;; esac

[[ -d "$S" ]] || { netns_exists || { say "nothing to tear down"; exit 0; }; }
mkdir -p "$S" "$PIDS" "$LOGS"
exec 9>"$S/.lock"
flock -w 120 9 || { echo "ERROR: another hack/cluster script holds $S/.lock" >&2; exit 1; }
T0=$SECONDS
problems=0
problem() { echo "LEFT BEHIND: $*" >&2; problems=$((problems + 1)); }

ns_inode() { stat -L -c %i "/run/netns/$NS" 2>/dev/null; }
netns_ino=$(ns_inode || true)
mnt_ns=""
if h=$(holder_pid); then mnt_ns=$(readlink "/proc/$h/ns/mnt"); fi

# PIDs of every process in our network namespace or the node's mount namespace
ours() {
  local p n m
  for p in /proc/[0-9]*; do
    n=$(readlink "$p/ns/net" 2>/dev/null) || continue
    m=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
    if [[ -n "$netns_ino" && "$n" == "net:[$netns_ino]" ]] || [[ -n "$mnt_ns" && "$m" == "$mnt_ns" ]]; then
      echo "${p#/proc/}"
    fi
  done
}
# PIDs in the pod cgroups (the containers, whatever their namespaces)
pod_pids() { cat /sys/fs/cgroup/pids/kubepods*/cgroup.procs /sys/fs/cgroup/pids/kubepods*/**/cgroup.procs 2>/dev/null | sort -u; }
shopt -s globstar nullglob

say "stopping the node's components [+$((SECONDS - T0)) s]"
for c in kube-router kube-proxy kubelet kube-scheduler kube-controller-manager; do stop_pid "$c" 15; done

if alive containerd; then
  # every container and sandbox: SIGKILL, then delete
  tasks=$(in_node ctr --address /run/containerd/containerd.sock -n k8s.io tasks ls -q 2>/dev/null || true)
  if [[ -n "$tasks" ]]; then
    info "killing $(wc -w <<<"$tasks") containers"
    for t in $tasks; do in_node ctr --address /run/containerd/containerd.sock -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    for i in $(seq 50); do [[ -z "$(pod_pids)" ]] && break; sleep 0.1; done
    for t in $tasks; do in_node ctr --address /run/containerd/containerd.sock -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  for c in $(in_node ctr --address /run/containerd/containerd.sock -n k8s.io containers ls -q 2>/dev/null || true); do
    in_node ctr --address /run/containerd/containerd.sock -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
  done
fi
# whatever is still in a pod cgroup is a container process of ours
for p in $(pod_pids); do kill -KILL "$p" 2>/dev/null || true; done
stop_pid containerd 15
# our shims: containerd-shim processes in the node's mount namespace
if [[ -n "$mnt_ns" ]]; then
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/ns/mnt" 2>/dev/null)" == "$mnt_ns" ]] || continue
    [[ "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" == *containerd-shim* ]] && kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
fi
for c in kube-apiserver etcd; do stop_pid "$c" 20; done
bash "$HERE/postgres.sh" stop || true

# anything else still in our namespaces is ours too
left=$(ours | grep -vx "$(holder_pid 2>/dev/null || echo none)" || true)
if [[ -n "$left" ]]; then
  info "killing leftover processes: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60; echo -n '; '; done)"
  for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
  sleep 0.3
fi
say "ending the node's mount namespace [+$((SECONDS - T0)) s]"
stop_pid holder 5
for i in $(seq 50); do [[ -z "$(ours)" ]] && break; sleep 0.1; done
for p in $(ours); do problem "process $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
rm -f "$PIDS"/*

say "removing the network namespace $NS, $VETH_HOST and the routes [+$((SECONDS - T0)) s]"
if netns_exists; then ip netns del "$NS"; fi
ip link show "$VETH_HOST" >/dev/null 2>&1 && ip link del "$VETH_HOST" 2>/dev/null || true
for r in "$SVC_CIDR" "$POD_CIDR"; do ip route show "$r" | grep -q . && ip route del "$r" 2>/dev/null || true; done

HS="$S/host-state"
# a leftover of another checkout's node: its saved host state is the one to restore
if [[ ! -f "$HS/done" ]]; then other=$(cat "$OWNER" 2>/dev/null || true); [[ -n "$other" && -f "$other/host-state/done" ]] && cp -a "$other/host-state" "$S/"; fi
rm -f "$OWNER"
if [[ -f "$HS/done" ]]; then
  # /run/netns: ip netns add makes it a shared bind mount of itself
  if [[ "$(cat "$HS/run-netns-mount")" == no ]] && mountpoint -q /run/netns && [[ -z "$(ls -A /run/netns)" ]]; then
    umount /run/netns || true
  fi
  if [[ "$(cat "$HS/run-netns-dir")" == no && -d /run/netns && -z "$(ls -A /run/netns)" ]] && ! mountpoint -q /run/netns; then
    rmdir /run/netns || true
  fi
  say "restoring the sysctls kubelet set"
  while IFS='=' read -r k v; do
    [[ -n "$k" ]] || continue
    [[ "$(sysctl -n "$k")" == "$v" ]] || sysctl -qw "$k=$v"
  done <"$HS/sysctls"
fi

say "removing the pod cgroups [+$((SECONDS - T0)) s]"
for d in /sys/fs/cgroup/*/kubepods* /sys/fs/cgroup/*/k8s.io; do
  [[ -d $d ]] || continue
  find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  [[ -d $d ]] && problem "cgroup $d (still has processes?)"
done
if [[ -f "$HS/cgroups" ]]; then
  while read -r d; do problem "cgroup $d appeared while the node ran"; done < <(comm -13 "$HS/cgroups" <(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d | sort))
fi

# checks: nothing of ours on the host
grep -E "$S|/run/netns/$NS" /proc/mounts | while read -r l; do problem "mount $l"; done || true
ip link show "$VETH_HOST" >/dev/null 2>&1 && problem "link $VETH_HOST"
ip route show | grep -E "^(${SVC_CIDR//./\\.}|${POD_CIDR//./\\.}) " && problem "routes"
netns_exists && problem "netns $NS"
[[ -e /opt/containerd ]] && warn "/opt/containerd exists (not created by us unless this is new)"
if [[ -f "$HS/sysctls" ]]; then
  while IFS='=' read -r k v; do [[ "$(sysctl -n "$k")" == "$v" ]] || problem "sysctl $k=$(sysctl -n "$k"), was $v"; done <"$HS/sysctls"
fi

if ((problems)); then
  echo "ERROR: $problems things left behind (see above); state kept in $S" >&2
  exit 1
fi
rm -rf "$HS"
if ! $keep; then
  find "$S" -mindepth 1 -maxdepth 1 ! -name logs ! -name .lock -exec rm -rf {} +
fi
say "cluster down, host restored ($((SECONDS - T0)) s)"
