#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster (v1.37.2) on this machine, all
# of it inside the network namespace promo-cluster (see docs/cluster.md):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet, kube-proxy (iptables), kube-router (NetworkPolicy only), CoreDNS,
# and PostgreSQL outside Kubernetes. Idempotent: with the node up it checks
# it, restarts any component that died, and returns.
#
# Writes, last and only when all is ready:
#   .cluster/kubeconfig  admin kubeconfig, server https://10.239.0.2:6443
#   .cluster/node.env    KUBECONFIG NODE_IP API_URL DATABASE_URL POSTGRES_SUPERUSER_URL
#                        POD_CIDR SERVICE_CIDR CLUSTER_DNS STORAGE_CLASS
# Logs: .cluster/logs/<component>.log. Needs root.
#
# Environment: CLUSTER_PVS (number of local PVs, default 6),
#              CLUSTER_PV_SIZE (default 1Gi), CLUSTER_TIMEOUT (seconds per wait, default 120).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need_root
T0=$SECONDS
TIMEOUT=${CLUSTER_TIMEOUT:-120}
PVS=${CLUSTER_PVS:-6}
PV_SIZE=${CLUSTER_PV_SIZE:-1Gi}

# ---------------------------------------------------------------- packages
ensure_packages() {
  local need=() p
  # package:command that proves it is there
  for p in containerd:containerd runc:runc containernetworking-plugins:/usr/lib/cni/bridge \
    iptables:iptables ipset:ipset conntrack:conntrack socat:socat ebtables:ebtables \
    ethtool:ethtool nftables:nft iproute2:ip util-linux:nsenter openssl:openssl curl:curl; do
    local cmd=${p#*:}
    if [[ $cmd == /* ]]; then [[ -x $cmd ]] || need+=("${p%%:*}"); else command -v "$cmd" >/dev/null || need+=("${p%%:*}"); fi
  done
  ((${#need[@]} == 0)) && return 0
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
}

# ---------------------------------------------------------------- PKI
cert() { # name CN O(or "") SANs(or "") usage(server|client|both)
  local name=$1 cn=$2 o=$3 sans=$4 usage=$5 eku
  [[ -f "$PKI/$name.crt" ]] && return 0
  case $usage in server) eku=serverAuth ;; client) eku=clientAuth ;; both) eku=serverAuth,clientAuth ;; esac
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
    -subj "/CN=$cn${o:+/O=$o}" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  if [[ ! -f "$PKI/ca.crt" ]]; then
    say "making the cluster's certificates"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/ca.key" \
      -subj "/CN=promo-cluster-ca" -days 3650 -out "$PKI/ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$API_SVC_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DOMAIN,DNS:localhost,DNS:$NODE_NAME" server
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
  cert admin admin system:masters "" client
  cert kubelet "system:node:$NODE_NAME" system:nodes "" client
  cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME" server
  cert controller-manager system:kube-controller-manager "" "" client
  cert scheduler system:kube-scheduler "" "" client
  cert kube-proxy system:kube-proxy "" "" client
  cert kube-router system:kube-router "" "" client
  if [[ ! -f "$PKI/sa.key" ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
}

kubeconfig() { # file cert-name user
  write_if_changed "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: promo-cluster
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: promo-cluster
  context: {cluster: promo-cluster, user: $3}
current-context: promo-cluster
EOF
}

# ---------------------------------------------------------------- configs
write_configs() {
  mkdir -p "$CFG" "$NODE"/{var-lib,var-log,run} "$S/cni/net.d" "$LOGS" "$PIDS" "$KUBECACHEDIR"
  kubeconfig "$CFG/admin.kubeconfig" admin admin
  kubeconfig "$CFG/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  kubeconfig "$CFG/scheduler.kubeconfig" scheduler system:kube-scheduler
  kubeconfig "$CFG/kubelet.kubeconfig" kubelet "system:node:$NODE_NAME"
  kubeconfig "$CFG/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
  kubeconfig "$CFG/kube-router.kubeconfig" kube-router system:kube-router

  # the node's own resolver: the cluster DNS only (nothing ever reaches the host's)
  write_if_changed "$NODE/resolv.conf" <<EOF
nameserver $DNS_IP
search $DOMAIN
options ndots:1 timeout:1 attempts:2
EOF
  # kubelet's resolv.conf, the base of pods with dnsPolicy Default (CoreDNS
  # itself, which forwards nowhere): no resolver at all
  write_if_changed "$CFG/kubelet-resolv.conf" <<EOF
nameserver 127.0.0.1
EOF

  local pause_ref
  pause_ref=$(cat "$CL_BIN/images/pause.ref")
  # containerd 1.6 (Debian), config version 2. Paths are those of the node's
  # mount namespace, where /var/lib and /run are .cluster/node/{var-lib,run}.
  write_if_changed "$CFG/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = 0

[grpc]
  address = "/run/containerd/containerd.sock"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  # root lacks CAP_SYS_RESOURCE here: runc may not lower oom_score_adj
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "/run/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF

  write_if_changed "$S/cni/net.d/10-promo.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "promo",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "${NODE_POD_CIDR%.0/24}.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/var/lib/cni/networks"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  write_if_changed "$CFG/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 without systemd (pitfall 1)
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: $DOMAIN
clusterDNS: [$DNS_IP]
resolvConf: $CFG/kubelet-resolv.conf
podLogsDir: /var/log/pods
volumePluginDir: /var/lib/kubelet/volume-plugins
# imported images cannot be pulled back: never collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
failSwapOn: false
maxPods: 110
serializeImagePulls: false
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
EOF

  write_if_changed "$CFG/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $CFG/kube-proxy.kubeconfig
# No clusterCIDR: traffic from the host to a ClusterIP keeps its source
# address (no masquerade), so NetworkPolicy applies to it as to any client.
iptables:
  localhostNodePorts: false
# conntrack sysctls are global: leave them alone
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
nodePortAddresses: ["$NODE_IP/32"]
oomScoreAdj: 0
EOF
}

# ---------------------------------------------------------------- components
start_holder() {
  if holder_pid >/dev/null; then return 0; fi
  local c
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router; do
    alive "$c" && die "$c runs without the node's namespace holder: run hack/cluster/down.sh first"
  done
  say "starting the node's mount namespace"
  rm -f "$NODE/holder.ready"
  : >>"$LOGS/holder.log"
  setsid nsenter --net="/run/netns/$NS" -- unshare --mount --propagation private -- \
    bash "$HERE/node-ns.sh" "$NODE" >>"$LOGS/holder.log" 2>&1 </dev/null 9>&- &
  local pid=$! i
  for i in $(seq 100); do [[ -f "$NODE/holder.ready" ]] && break; [[ -d /proc/$pid ]] || break; sleep 0.05; done
  [[ -f "$NODE/holder.ready" && "$(cat "$NODE/holder.ready")" == "$pid" ]] || die "the node's mount namespace did not come up" holder
  sleep 0.05
  echo "promo-node-holder infinity " >"$PIDS/holder.cmd"
  echo "$pid" >"$PIDS/holder"
  pid_is "$pid" holder || die "the node's namespace holder is not what was started" holder
}

etcd_healthy() { in_netns curl -fsS --max-time 2 http://127.0.0.1:2379/health | grep -q '"health":"true"'; }
api_ready() { curl -fsS --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API_URL/readyz" | grep -q ok; }
api_healthz_local() { in_netns curl -fsS --max-time 2 -k "https://127.0.0.1:$1/healthz" | grep -q ok; }

start_etcd() {
  alive etcd && return 0
  mkdir -p "$S/etcd"; chmod 700 "$S/etcd"
  start_in_node etcd "$K8S_BIN/etcd" --name "$NODE_NAME" --data-dir "$S/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
    --log-level warn --quota-backend-bytes 2147483648
}

start_apiserver() {
  alive kube-apiserver && return 0
  start_in_node kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port 6443 \
    --service-cluster-ip-range "$SVC_CIDR" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
}

start_controller_manager() {
  alive kube-controller-manager && return 0
  start_in_node kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$CFG/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CFG/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CFG/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SVC_CIDR" --profiling=false --v=1
}

start_scheduler() {
  alive kube-scheduler && return 0
  start_in_node kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$CFG/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CFG/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CFG/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

ctr_node() { in_node ctr --address /run/containerd/containerd.sock "$@"; }
containerd_ready() { ctr_node version; }

start_containerd() {
  alive containerd && return 0
  start_in_node containerd containerd --config "$CFG/containerd.toml" --log-level warn
}

import_images() {
  local f files=()
  for f in "$CL_BIN"/images/*.tar "$ROOT"/bin/images/*.tar; do [[ -f $f ]] && files+=("$f"); done
  ((${#files[@]})) || return 0
  say "importing ${#files[@]} images into containerd"
  bash "$HERE/load-images.sh" "${files[@]}" >/dev/null
}

start_kubelet() {
  alive kubelet && return 0
  start_in_node kubelet "$K8S_BIN/kubelet" --config "$CFG/kubelet.yaml" \
    --kubeconfig "$CFG/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir /var/lib/kubelet --cert-dir /var/lib/kubelet/pki --v=1
}

start_kube_proxy() {
  alive kube-proxy && return 0
  start_in_node kube-proxy "$K8S_BIN/kube-proxy" --config "$CFG/kube-proxy.yaml" --v=1
}

start_kube_router() {
  alive kube-router && return 0
  # NetworkPolicy enforcement only (v2.1.0: reported flaws; test-only enforcer)
  start_in_node kube-router "$CL_BIN/kube-router" --kubeconfig "$CFG/kube-router.kubeconfig" \
    --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv4=true --enable-ipv6=false \
    --service-cluster-ip-range "$SVC_CIDR" \
    --health-port 20244 --metrics-port 0 --v=1
}

node_ready() { [[ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]; }
router_healthy() { in_netns curl -fsS --max-time 2 http://127.0.0.1:20244/healthz; }
proxy_healthy() { in_netns curl -fsS --max-time 2 http://127.0.0.1:10256/healthz; }
# the apiserver's own Service from inside the node: route + kube-proxy's OUTPUT DNAT work
api_service_answers() { in_netns curl -fsS --max-time 2 -k "https://$API_SVC_IP/readyz" -o /dev/null -w '%{http_code}' | grep -qE '^(200|401|403)$'; }
# a name through the cluster DNS Service, as any node process would resolve it
dns_answers() { in_node getent hosts "kubernetes.default.svc.$DOMAIN" | grep -q "^$API_SVC_IP "; }

apply_addons() {
  local coredns_ref
  coredns_ref=$(cat "$CL_BIN/images/coredns.ref")
  sed -e "s|@COREDNS_IMAGE@|$coredns_ref|g" -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@DOMAIN@|$DOMAIN|g" "$HERE/addons.yaml" \
    | kc apply --server-side --force-conflicts --field-manager=hack-cluster -f - >/dev/null
}

make_pvs() {
  local i out=""
  for i in $(seq 0 $((PVS - 1))); do
    mkdir -p "$S/pv/$i"
    chown 65532:65532 "$S/pv/$i"; chmod 0770 "$S/pv/$i"
    out+="---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-spool-$i
  labels: {promo.dev/pool: local-spool}
spec:
  capacity: {storage: $PV_SIZE}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-spool
  volumeMode: Filesystem
  local: {path: $S/pv/$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}
"
  done
  printf '%s' "$out" | kc apply --server-side --field-manager=hack-cluster -f - >/dev/null
}

# A released local PV (its claim deleted) is emptied and made available again,
# as a provisioner would give a fresh volume.
recycle_pvs() {
  local pv
  for pv in $(kc get pv -l promo.dev/pool=local-spool -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{"\n"}{end}'); do
    local i=${pv#local-spool-}
    [[ -d "$S/pv/$i" ]] && find "$S/pv/$i" -mindepth 1 -delete
    kc patch pv "$pv" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null
    info "recycled $pv"
  done
}

write_outputs() {
  local db su
  db=$(bash "$HERE/postgres.sh" url | sed -n 's/^DATABASE_URL=//p')
  su=$(bash "$HERE/postgres.sh" url | sed -n 's/^POSTGRES_SUPERUSER_URL=//p')
  write_if_changed "$S/kubeconfig" <"$CFG/admin.kubeconfig"
  chmod 600 "$S/kubeconfig"
  write_if_changed "$S/node.env" <<EOF
KUBECONFIG=$S/kubeconfig
NODE_IP=$NODE_IP
NODE_NAME=$NODE_NAME
API_URL=$API_URL
DATABASE_URL=$db
POSTGRES_SUPERUSER_URL=$su
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SVC_CIDR
CLUSTER_DNS=$DNS_IP
STORAGE_CLASS=local-spool
EOF
}

all_alive() {
  local c
  holder_pid >/dev/null || return 1
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router; do alive "$c" || return 1; done
}

# ================================================================ main
mkdir -p "$S" "$LOGS" "$PIDS"
exec 9>"$S/.lock"
if ! flock -n 9; then
  say "waiting for another hack/cluster script (lock $S/.lock)"
  flock -w 600 9 || { echo "ERROR: another hack/cluster script holds $S/.lock" >&2; exit 1; }
fi

if all_alive && api_ready && node_ready && [[ -f "$S/node.env" ]]; then
  say "node already up: checking"
  wait_for 30 "CoreDNS to answer through its Service" - dns_answers
  router_healthy >/dev/null || die "kube-router is not healthy" kube-router
  bash "$HERE/postgres.sh" start >/dev/null 9>&-
  recycle_pvs
  write_outputs
  say "cluster up ($((SECONDS - T0)) s): export KUBECONFIG=$S/kubeconfig, or source $S/node.env"
  exit 0
fi

rm -f "$S/node.env" # written again only when all is ready
ensure_packages
bash "$HERE/build-bins.sh"
for b in "$K8S_BIN"/{etcd,kube-apiserver,kubectl,kubelet,kube-controller-manager,kube-scheduler,kube-proxy} "$CL_BIN"/{coredns,kube-router,pause}; do
  [[ -x $b ]] || die "missing $b after the build"
done
TB=$SECONDS
if ! holder_pid >/dev/null && [[ -n "$(ls -A "$LOGS" 2>/dev/null)" ]]; then
  rm -rf "$S/logs.prev"; mv "$LOGS" "$S/logs.prev"; mkdir -p "$LOGS"
fi
say "network namespace $NS ($NODE_IP), veth $VETH_HOST/$VETH_NS"
net_up
make_pki
write_configs
bash "$HERE/postgres.sh" start >/dev/null 9>&-
start_holder

say "starting etcd"
start_etcd
wait_for "$TIMEOUT" "etcd" etcd etcd_healthy
say "starting kube-apiserver"
start_apiserver
wait_for "$TIMEOUT" "kube-apiserver /readyz" kube-apiserver api_ready
apply_addons # RBAC for kube-router and CoreDNS before they start
say "starting kube-controller-manager, kube-scheduler, containerd"
start_controller_manager
start_scheduler
start_containerd
wait_for "$TIMEOUT" "containerd" containerd containerd_ready
import_images
say "starting kubelet, kube-proxy, kube-router"
start_kubelet
start_kube_proxy
# kube-router needs its Node object: it exits when kubelet has not registered yet
wait_for "$TIMEOUT" "node $NODE_NAME registered" kubelet kc get node "$NODE_NAME"
start_kube_router
make_pvs
recycle_pvs
wait_for "$TIMEOUT" "node $NODE_NAME Ready" kubelet node_ready
info "node Ready $((SECONDS - TB)) s after the start"
wait_for "$TIMEOUT" "kube-proxy healthz" kube-proxy proxy_healthy
wait_for "$TIMEOUT" "the kubernetes Service from the node" kube-proxy api_service_answers
wait_for "$TIMEOUT" "kube-router healthz" kube-router router_healthy
say "waiting for CoreDNS"
kc -n kube-system rollout status deployment/coredns --timeout="${TIMEOUT}s" >/dev/null \
  || { kc -n kube-system get pods -o wide >&2; die "CoreDNS did not become ready" kubelet containerd; }
wait_for "$TIMEOUT" "CoreDNS to answer through its Service" kube-proxy dns_answers
kc wait --for=jsonpath='{.status.phase}'=Available pv -l promo.dev/pool=local-spool --timeout=30s >/dev/null 2>&1 || true
all_alive || die "a component exited during start-up" etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router
write_outputs
say "cluster up in $((SECONDS - T0)) s (start $((SECONDS - TB)) s): export KUBECONFIG=$S/kubeconfig, or source $S/node.env"
