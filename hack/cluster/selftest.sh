#!/usr/bin/env bash
# Self-check of hack/cluster: with no node running, records the host's state,
# runs up.sh, checks the cluster, runs down.sh and shows that the host's state
# is exactly as before. Prints timings and the components' RSS.
#
# Checks: a restricted namespace (Pod Security enforce=restricted rejects a
# privileged pod, admits a restricted one); a pause Deployment Ready; a Service
# reaching a pod from the host through its ClusterIP (CoreDNS's /health on
# 8080); cluster DNS from the node; a ServiceAccount token accepted by the
# API server; a NetworkPolicy denying ingress enforced by kube-router (and
# lifted); a claim of the default class bound to a local PV; up.sh again
# returns quickly; down.sh leaves the host as it found it.
#   selftest.sh            up, checks, down, diff
#   SELFTEST_KEEP=1 selftest.sh    leave the node up after the checks (no diff)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need_root
out=$(mktemp -d /tmp/promo-cluster-selftest.XXXXXX)
pass=0 fail=0
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

host_state() { # file
  (
    set +e
    echo "## links"; ip -d -br link | sort
    echo "## addresses"; ip -br addr | sort
    echo "## routes"; ip route show table all; ip -6 route show table all
    echo "## rules"; ip rule; ip -6 rule
    echo "## iptables"; iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//g'
    echo "## ip6tables"; ip6tables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//g'
    echo "## nft"; nft list ruleset 2>&1
    echo "## sysctls"
    sysctl "${KUBELET_SYSCTLS[@]}" net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.all.route_localnet \
      net.ipv4.conf.all.rp_filter net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
      net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established 2>&1
    echo "## mounts"; sort /proc/mounts
    echo "## cgroups"; find /sys/fs/cgroup -maxdepth 3 -type d | sort
    echo "## host paths"
    ls -a /run /var/lib /var/log /opt /etc/cni /etc/netns /run/netns /var/lib/cni /var/lib/kubelet 2>&1
    echo "## our processes (named like a component, or using .cluster)"
    ps -eo pid=,args= | grep -E "$S|promo-node-holder|containerd|kubelet|kube-proxy|kube-router|coredns" | grep -v -E "grep|selftest"
    true
  ) >"$1" 2>&1
}

if alive kube-apiserver || holder_pid >/dev/null || netns_exists; then
  echo "ERROR: a node is running (or its netns exists): selftest needs it down (hack/cluster/down.sh)" >&2
  exit 1
fi
host_state "$out/before"

t=$SECONDS
bash "$HERE/up.sh"
up_s=$((SECONDS - t))
export KUBECONFIG="$S/kubeconfig"
K() { "$K8S_BIN/kubectl" "$@"; }
# shellcheck disable=SC1091
source "$S/node.env"
[[ -n "$DATABASE_URL" && -n "$KUBECONFIG" && "$NODE_IP" == 10.239.0.2 ]] && ok "node.env written" || bad "node.env"

pause_ref=$(cat "$CL_BIN/images/pause.ref")
coredns_ref=$(cat "$CL_BIN/images/coredns.ref")
NSX=promo-selftest
K create namespace $NSX >/dev/null
K label namespace $NSX pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null

if K -n $NSX run priv --image="$pause_ref" --image-pull-policy=Never --restart=Never --dry-run=server \
  --overrides='{"spec":{"containers":[{"name":"priv","image":"'"$pause_ref"'","securityContext":{"privileged":true}}]}}' >/dev/null 2>"$out/psa.err"; then
  bad "Pod Security restricted admitted a privileged pod"
else
  grep -q 'violates PodSecurity' "$out/psa.err" && ok "Pod Security restricted rejects a privileged pod" || bad "privileged pod rejected for another reason: $(cat "$out/psa.err")"
fi

sc='{"runAsNonRoot":true,"runAsUser":65532,"seccompProfile":{"type":"RuntimeDefault"}}'
csc='{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"readOnlyRootFilesystem":true}'
K apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: pause, namespace: $NSX}
spec:
  replicas: 2
  selector: {matchLabels: {app: pause}}
  template:
    metadata: {labels: {app: pause}}
    spec:
      securityContext: $sc
      containers:
      - {name: pause, image: "$pause_ref", imagePullPolicy: Never, securityContext: $csc}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: $NSX}
data:
  Corefile: |
    .:1053 {
        health :8080
        whoami
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $NSX}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: $sc
      containers:
      - name: web
        image: "$coredns_ref"
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        securityContext: $csc
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 1}
        volumeMounts: [{name: config, mountPath: /etc/coredns}]
      volumes: [{name: config, configMap: {name: web}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NSX}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
t=$SECONDS
if K -n $NSX rollout status deploy/pause --timeout=60s >/dev/null; then ok "pause Deployment (2 replicas, restricted) Ready in $((SECONDS - t)) s"; else bad "pause Deployment not Ready"; K -n $NSX get pods -o wide; fi
if K -n $NSX rollout status deploy/web --timeout=60s >/dev/null; then ok "web Deployment Ready"; else bad "web Deployment not Ready"; K -n $NSX describe pods -l app=web | tail -20; fi
svc_ip=$(K -n $NSX get svc web -o jsonpath='{.spec.clusterIP}')
pod_ip=$(K -n $NSX get pods -l app=web -o jsonpath='{.items[0].status.podIP}')
get() { curl -fsS --max-time 2 "$1" 2>/dev/null; }
answered=""
for i in $(seq 40); do [[ "$(get "http://$svc_ip/health")" == OK ]] && { answered=1; break; }; sleep 0.5; done
[[ -n $answered ]] && ok "host -> ClusterIP $svc_ip:80 -> pod $pod_ip:8080 answers /health" || bad "ClusterIP $svc_ip does not answer from the host"
[[ "$(get "http://$pod_ip:8080/health")" == OK ]] && ok "host -> pod IP $pod_ip:8080 answers" || bad "pod IP $pod_ip does not answer from the host"
if in_node getent hosts "web.$NSX.svc.$DOMAIN" | grep -q "^$svc_ip "; then ok "cluster DNS resolves web.$NSX.svc.$DOMAIN from the node"; else bad "cluster DNS"; fi

[[ "$(in_netns curl -fsS --max-time 2 "http://$svc_ip/health" 2>/dev/null)" == OK ]] && ok "node (as the API server) -> ClusterIP $svc_ip:80 answers over TCP" || bad "ClusterIP from the node"

# The API server calls a webhook through its Service's ClusterIP. The "webhook"
# here is CoreDNS's plain-HTTP health port, so the call fails in the TLS
# handshake — which shows that the API server reached the pod.
K label namespace $NSX promo-selftest/webhook=on >/dev/null
K apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: promo-selftest}
webhooks:
- name: selftest.promo.dev
  clientConfig: {service: {name: web, namespace: $NSX, port: 80, path: /validate}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  namespaceSelector: {matchLabels: {promo-selftest/webhook: "on"}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
EOF
wh=""
for i in $(seq 20); do
  wh=$(K -n $NSX create configmap wh-probe 2>&1 || true)
  grep -q 'HTTP response to HTTPS client' <<<"$wh" && break
  sleep 0.5
done
if grep -q 'HTTP response to HTTPS client' <<<"$wh"; then ok "API server reaches a webhook Service's pod through the ClusterIP"; else bad "webhook call through the Service: $wh"; fi
K delete validatingwebhookconfiguration promo-selftest >/dev/null

tok=$(K -n $NSX create token default --duration=10m)
who=$(curl -fsS --cacert "$PKI/ca.crt" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -X POST \
  -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' "$API_URL/apis/authentication.k8s.io/v1/selfsubjectreviews" || true)
grep -q "system:serviceaccount:$NSX:default" <<<"$who" && ok "ServiceAccount token accepted by the API server" || bad "ServiceAccount token: $who"

K apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: $NSX}
spec:
  podSelector: {}
  policyTypes: [Ingress]
EOF
t0=$(date +%s.%N); blocked=""
for i in $(seq 40); do if ! curl -fsS --max-time 0.5 "http://$pod_ip:8080/health" >/dev/null 2>&1; then blocked=1; break; fi; sleep 0.25; done
t1=$(date +%s.%N)
if [[ -n $blocked ]] && ! get "http://$svc_ip/health" >/dev/null; then
  ok "NetworkPolicy deny-ingress enforced by kube-router (pod IP and ClusterIP blocked, $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s after apply)"
else
  bad "NetworkPolicy not enforced"
fi
K -n $NSX delete networkpolicy deny-ingress >/dev/null
answered=""
for i in $(seq 40); do [[ "$(get "http://$svc_ip/health")" == OK ]] && { answered=1; break; }; sleep 0.25; done
[[ -n $answered ]] && ok "traffic allowed again once the policy is deleted" || bad "still blocked after deleting the policy"

K apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: spool, namespace: $NSX}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: spool, namespace: $NSX}
spec:
  securityContext: $sc
  containers:
  - name: pause
    image: "$pause_ref"
    imagePullPolicy: Never
    securityContext: $csc
    volumeMounts: [{name: spool, mountPath: /spool}]
  volumes: [{name: spool, persistentVolumeClaim: {claimName: spool}}]
EOF
if K -n $NSX wait --for=condition=Ready pod/spool --timeout=60s >/dev/null; then
  ok "claim of the default class bound to $(K -n $NSX get pvc spool -o jsonpath='{.spec.volumeName}'), pod Ready"
else
  bad "claim/pod with the default StorageClass"; K -n $NSX describe pvc spool | tail -5
fi

echo "== RSS (MB) of the components"
total=0
for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router; do
  r=$(($(ps -o rss= -p "$(cat "$PIDS/$c")") / 1024)); total=$((total + r)); printf '  %-24s %5d\n' "$c" "$r"
done
pods=$(ps -eo rss=,args= | grep -E 'containerd-shim|/pause|/coredns' | grep -v grep | awk '{s+=$1} END {print int(s/1024)}')
printf '  %-24s %5d\n' "shims+pods" "$pods"; total=$((total + pods))
pm=$(head -1 "$S/postgres/data/postmaster.pid")
pg=$(for p in $pm $(ps -o pid= --ppid "$pm"); do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{s+=$1} END {print int(s/1024)}')
printf '  %-24s %5d (PSS: shared buffers counted once)\n' "postgres" "$pg"
printf '  %-24s %5d (without postgres; %s pods)\n' total "$total" "$(K get pods -A --no-headers | wc -l)"

t=$SECONDS
bash "$HERE/up.sh" 2>"$out/up2.err" && ok "up.sh again on a running node: $((SECONDS - t)) s" || bad "second up.sh: $(cat "$out/up2.err")"
K delete namespace $NSX --wait=true --timeout=60s >/dev/null
bash "$HERE/up.sh" 2>"$out/up3.err"
grep -q recycled "$out/up3.err" && ok "released PV recycled by up.sh" || bad "released PV not recycled: $(cat "$out/up3.err")"

if [[ "${SELFTEST_KEEP:-}" == 1 ]]; then
  echo "node left up (SELFTEST_KEEP=1). up: ${up_s} s; $pass passed, $fail failed"
  exit $((fail > 0))
fi
t=$SECONDS
bash "$HERE/down.sh" && ok "down.sh in $((SECONDS - t)) s" || bad "down.sh"
host_state "$out/after"
if diff -u "$out/before" "$out/after" >"$out/diff"; then
  ok "host state after down identical to before up (links, addresses, routes, rules, iptables, nft, sysctls, mounts, cgroups, host paths, processes)"
else
  bad "host state differs:"; cat "$out/diff"
fi
echo "up (bins built): ${up_s} s. Files: $out"
echo "$pass passed, $fail failed"
exit $((fail > 0))
