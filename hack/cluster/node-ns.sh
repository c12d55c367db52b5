#!/usr/bin/env bash
# The node's namespace holder, started by up.sh as
#   nsenter --net=/run/netns/promo-cluster unshare --mount --propagation private -- node-ns.sh NODE_DIR
# In this private mount namespace (nothing propagates to the host):
#   /sys            a sysfs of the node's network namespace, the host's cgroup
#                   hierarchies bound back under /sys/fs/cgroup (kubelet, runc)
#   /var/lib /var/log /run   NODE_DIR/{var-lib,var-log,run}: kubelet, containerd,
#                   CNI and iptables write there whatever their flags say
#   /etc/resolv.conf NODE_DIR/resolv.conf: only the cluster's DNS
# Every component is started into it with nsenter -t <this pid> -m -n; the
# mounts they make (volumes, pod netns, overlay rootfs) die with it.
set -euo pipefail
n=$1
mkdir -p "$n/.cgroup"
mount --rbind /sys/fs/cgroup "$n/.cgroup"
umount -l /sys
mount -t sysfs sysfs /sys
mount --move "$n/.cgroup" /sys/fs/cgroup
mount --bind "$n/var-lib" /var/lib
mount --bind "$n/var-log" /var/log
mount --bind "$n/run" /run
mount --bind "$n/resolv.conf" /etc/resolv.conf
echo "$$" >"$n/holder.ready"
exec -a promo-node-holder sleep infinity
