# Shared by hack/cluster/*.sh (sourced, not run). The layout here is fixed:
# other parts of the repo code against these names and addresses.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/hack/cluster"
S="$ROOT/.cluster"            # all state of the node
LOGS="$S/logs"
PIDS="$S/pids"
CFG="$S/config"
PKI="$S/pki"
NODE="$S/node"                # what the node's private mount namespace sees as /var/lib, /var/log, /run
K8S_BIN="$ROOT/bin/k8s"
CL_BIN="$ROOT/bin/cluster"

NS=promo-cluster              # network namespace
VETH_HOST=promo-h
VETH_NS=promo-n
HOST_IP=10.239.0.1
NODE_IP=10.239.0.2
NODE_NAME=promo-node
POD_CIDR=10.240.0.0/16
NODE_POD_CIDR=10.240.0.0/24   # the first /24 kube-controller-manager gives the only node
SVC_CIDR=10.241.0.0/16
API_SVC_IP=10.241.0.1
DNS_IP=10.241.0.10
DOMAIN=cluster.local
API_URL="https://$NODE_IP:6443"
PG_PORT=5432

# Sysctls kubelet sets (pkg/kubelet/cm setupKernelTunables); saved at the
# first up, restored by down.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

export KUBECACHEDIR="$S/kube-cache"

say() { echo "==> $*" >&2; }
info() { echo "    $*" >&2; }
warn() { echo "WARNING: $*" >&2; }

# die MESSAGE [LOGNAME...]: fails loudly with the tail of the named logs.
die() {
  local msg=$1; shift
  echo "ERROR: $msg" >&2
  local l
  for l in "$@"; do
    if [[ -f "$LOGS/$l.log" ]]; then
      echo "---- last lines of $LOGS/$l.log ----" >&2
      tail -n 40 "$LOGS/$l.log" >&2
    fi
  done
  exit 1
}

need_root() { [[ $(id -u) -eq 0 ]] || { echo "ERROR: hack/cluster needs root (network and mount namespaces, cgroups)" >&2; exit 1; }; }

# (a mount of nsfs: a file left by a reboot is not a namespace)
netns_exists() { mountpoint -q "/run/netns/$NS" 2>/dev/null; }

# in_netns CMD...: runs CMD in the node's network namespace only (host mounts).
in_netns() { nsenter --net="/run/netns/$NS" -- "$@"; }

holder_pid() { local p; p=$(cat "$PIDS/holder" 2>/dev/null) || return 1; pid_is "$p" holder && echo "$p"; }

# pid_is PID NAME: PID is alive and is the process we started as NAME
# (its command line was recorded at start, so a reused PID is not taken for ours).
pid_is() {
  local pid=$1 name=$2
  [[ -n "$pid" && -d "/proc/$pid" && -f "$PIDS/$name.cmd" ]] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "$(cat "$PIDS/$name.cmd")" ]]
}

alive() { local p; p=$(cat "$PIDS/$1" 2>/dev/null) && pid_is "$p" "$1"; }

# in_node CMD...: runs CMD inside the node: its network namespace and its
# private mount namespace (where /var/lib, /var/log, /run are the node's own).
in_node() {
  local h
  h=$(holder_pid) || { echo "ERROR: the node's namespace holder is not running" >&2; return 1; }
  nsenter -t "$h" -m -n -- "$@"
}

# start_in_node NAME CMD...: starts a component inside the node, detached,
# logging to $LOGS/NAME.log, its PID in $PIDS/NAME.
start_in_node() {
  local name=$1; shift
  local h
  h=$(holder_pid) || die "the node's namespace holder is not running" holder
  : >>"$LOGS/$name.log"
  echo "---- $(date -u +%FT%TZ) starting $name" >>"$LOGS/$name.log"
  # nsenter execs (no fork for mount+net), so $! is the component's own PID.
  setsid nsenter -t "$h" -m -n -- "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  printf '%s ' "$@" >"$PIDS/$name.cmd"
  echo "$pid" >"$PIDS/$name"
  # the recorded command line is the one after nsenter's exec
  local i
  for i in $(seq 50); do
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "$(cat "$PIDS/$name.cmd")" ]] && return 0
    [[ -d /proc/$pid ]] || break
    sleep 0.02
  done
  [[ -d /proc/$pid ]] || die "$name exited at once" "$name"
}

# pid_running PID: alive and not a zombie (our daemons are reparented to PID 1,
# which may reap them late)
pid_running() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [[ ${st:0:1} != Z ]]; }

# stop_pid NAME [TIMEOUT]: SIGTERM, then SIGKILL after TIMEOUT seconds.
stop_pid() {
  local name=$1 t=${2:-15} pid
  pid=$(cat "$PIDS/$name" 2>/dev/null) || return 0
  if pid_is "$pid" "$name"; then
    local i t0=$SECONDS
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq $((t * 10))); do pid_running "$pid" || break; sleep 0.1; done
    if pid_running "$pid"; then
      info "$name still running after ${t}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true; sleep 0.2
    fi
    ((SECONDS - t0 < 2)) || info "$name stopped in $((SECONDS - t0)) s"
  fi
  rm -f "$PIDS/$name" "$PIDS/$name.cmd"
}

# wait_for SECONDS WHAT LOG CMD...: polls CMD until it succeeds; fails with
# the tail of LOG's log (LOG "-" for none) on timeout or when the component
# LOG has exited meanwhile.
wait_for() {
  local t=$1 what=$2 log=$3; shift 3
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [[ "$log" != - && -f "$PIDS/$log.cmd" ]] && ! alive "$log"; then die "$log exited while waiting for $what" "$log"; fi
    if ((SECONDS >= end)); then
      if [[ "$log" == - ]]; then die "timed out after ${t}s waiting for $what"; else die "timed out after ${t}s waiting for $what" "$log"; fi
    fi
    sleep 0.3
  done
}

# save_host_state: what down.sh restores, taken before anything of ours
# touches the host (kept until down.sh has restored it: a later up must not
# take kubelet's values for the host's).
save_host_state() {
  [[ -f "$S/host-state/done" ]] && return 0
  mkdir -p "$S/host-state"
  local k
  for k in "${KUBELET_SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$S/host-state/sysctls"
  if [[ -d /run/netns ]]; then echo yes; else echo no; fi >"$S/host-state/run-netns-dir"
  if mountpoint -q /run/netns 2>/dev/null; then echo yes; else echo no; fi >"$S/host-state/run-netns-mount"
  find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d | sort >"$S/host-state/cgroups"
  touch "$S/host-state/done"
}

# The netns may be the leftover of a node started from another checkout (a
# session that ended with its node up, then CI in a fresh clone): its
# processes are gone, but only that checkout knows the host's state. Take it
# over — or refuse while that node still runs.
OWNER=/run/promo-cluster.owner
adopt_netns() {
  local other
  other=$(cat "$OWNER" 2>/dev/null) || return 0
  [[ "$other" == "$S" ]] && return 0
  local h
  h=$(cat "$other/pids/holder" 2>/dev/null || true)
  if [[ -n "$h" && -d /proc/$h && "$(tr '\0' ' ' <"/proc/$h/cmdline" 2>/dev/null)" == "promo-node-holder infinity " ]]; then
    die "the node of another checkout ($other) is running: stop it with its hack/cluster/down.sh first"
  fi
  if [[ -f "$other/host-state/done" && ! -f "$S/host-state/done" ]]; then
    warn "taking over the leftover node of $other (its saved host state included)"
    mkdir -p "$S"; cp -a "$other/host-state" "$S/"
  fi
}

# net_up: the network namespace, the veth pair and the routes (idempotent).
# Nothing is routed anywhere but between the host and the namespace.
net_up() {
  if ! netns_exists; then
    save_host_state
    rm -f "/run/netns/$NS" # a leftover of a reboot, not a namespace
    ip netns add "$NS"
  else
    adopt_netns
  fi
  echo "$S" >"$OWNER"
  if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
    ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$NS"
  fi
  # no IPv6 on the pair: nothing to say to each other but IPv4
  sysctl -qw "net.ipv6.conf.$VETH_HOST.disable_ipv6=1" 2>/dev/null || true
  ip addr replace "$HOST_IP/30" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  in_netns sysctl -qw "net.ipv6.conf.$VETH_NS.disable_ipv6=1" 2>/dev/null || true
  in_netns ip link set lo up
  in_netns ip addr replace "$NODE_IP/30" dev "$VETH_NS"
  in_netns ip link set "$VETH_NS" up
  # host -> Services (through kube-proxy in the namespace) and -> pods
  ip route replace "$SVC_CIDR" via "$NODE_IP" dev "$VETH_HOST"
  ip route replace "$POD_CIDR" via "$NODE_IP" dev "$VETH_HOST"
  # In the namespace a locally generated packet needs a route before the
  # OUTPUT chain can DNAT it to a pod: the Service CIDR points at the host end
  # of the veth (the packet is rerouted to cni0 after DNAT; a Service without
  # endpoints is rejected by kube-proxy before it leaves). No default route.
  in_netns ip route replace "$SVC_CIDR" via "$HOST_IP" dev "$VETH_NS"
  in_netns sysctl -qw net.ipv4.ip_forward=1
  in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1
}

kc() { "$K8S_BIN/kubectl" --kubeconfig "$CFG/admin.kubeconfig" "$@"; }

# write_if_changed FILE: stdin to FILE, leaving FILE untouched when the same
# (kube-proxy exits whenever its config file is rewritten).
write_if_changed() {
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [[ -f "$f" ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv "$tmp" "$f"; fi
}
