#!/usr/bin/env bash
# podnet's benchmark (`make bench`, which first installs iptables, hyperfine
# and iperf3 and builds bin/). Runs three drivers, then checks that the root
# network namespace is exactly as before:
#   cnibench      podnet-cni vs the reference CNI plugins (built from the Go
#                 module proxy into bench/.cache/bin), and `podnet run --wait`;
#   clusterbench  local clusters (`podnet cluster create`): cross-node
#                 throughput vs the underlay, create time, join → routes,
#                 agent memory;
#   svcbench      Services: podnet's internal/proxy vs kube-proxy's nftables
#                 and iptables proxiers (bench/svcbench/kubeproxy, built into
#                 $PODNET_BENCH_CACHE, default /var/cache/podnet-bench): sync
#                 times, connect latency, iperf3 through a ClusterIP;
#   dns           `podnet dns` vs CoreDNS v1.15.0 under dnsperf (bench/dns/run.sh:
#                 hosts+cache, a file zone, forward to a local upstream);
#   dnsk8s        `podnet dns`'s kubernetes plugin with 10k Services (QPS, RSS,
#                 Service creation -> answer) and the queries of an external
#                 name with and without autopath (bench/dnsk8s; no CoreDNS peer);
#   ingress       the ingress proxy (internal/ingress/proxy) vs nginx and
#                 httputil.ReverseProxy under wrk on 127.0.0.1: one route,
#                 1000 hosts, HTTPS; Build+Swap -> served; memory (bench/ingress).
# Usage: bench/run.sh [cni|cluster|svc|dns|dnsk8s|ingress] [FLAGS]. With a driver
# named only that driver runs and FLAGS go to it; otherwise all run and
# FLAGS go to cnibench (e.g. `bench/run.sh -iters 20 -phases cni`). See
# bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CACHE=bench/.cache
REF_VERSION=${CNI_PLUGINS_VERSION:-latest}
PEER_CACHE=${PODNET_BENCH_CACHE:-/var/cache/podnet-bench}
what=all
case "${1:-}" in
  cni|cluster|svc|dns|dnsk8s|ingress) what=$1; shift ;;
esac
run_cni=0 run_cluster=0 run_svc=0 run_dns=0 run_dnsk8s=0 run_ingress=0
case "$what" in
  all) run_cni=1 run_cluster=1 run_svc=1 run_dns=1 run_dnsk8s=1 run_ingress=1 ;;
  cni) run_cni=1 ;;
  cluster) run_cluster=1 ;;
  svc) run_svc=1 ;;
  dns) run_dns=1 ;;
  dnsk8s) run_dnsk8s=1 ;;
  ingress) run_ingress=1 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (it creates network namespaces)" >&2
  exit 2
fi
for f in bin/podnet bin/podnet-cni; do
  [ -x "$f" ] || { echo "bench: $f missing: run \`make bench\` (or \`make build\` first)" >&2; exit 2; }
done
if [ "$run_cni" = 1 ]; then
  command -v iptables >/dev/null || { echo "bench: iptables missing (the reference portmap needs it): run \`make bench\`" >&2; exit 2; }
fi
if [ "$run_cluster" = 1 ] || [ "$run_svc" = 1 ]; then
  command -v iperf3 >/dev/null || { echo "bench: iperf3 missing (the throughput runs need it): run \`make bench\`" >&2; exit 2; }
fi
if [ "$run_ingress" = 1 ]; then
  for b in nginx wrk; do
    command -v $b >/dev/null || { echo "bench: $b missing (the ingress bench needs it): run \`make bench\`" >&2; exit 2; }
  done
fi
if [ "$run_svc" = 1 ]; then
  [ -x /usr/sbin/xtables-legacy-multi ] || { echo "bench: iptables missing (kube-proxy's iptables mode needs it): run \`make bench\`" >&2; exit 2; }
fi

mkdir -p "$CACHE/bin"
if [ "$run_cni" = 1 ]; then
  echo "bench: reference plugins github.com/containernetworking/plugins@$REF_VERSION -> $CACHE/bin" >&2
  for p in main/bridge ipam/host-local meta/portmap; do
    if ! GOBIN="$PWD/$CACHE/bin" "$GO" install "github.com/containernetworking/plugins/plugins/$p@$REF_VERSION"; then
      # Offline: a build from an earlier run will do (the driver prints its version).
      [ -x "$CACHE/bin/${p#*/}" ] || { echo "bench: cannot build the reference ${p#*/}" >&2; exit 1; }
      echo "bench: go install failed; using the existing $CACHE/bin/${p#*/}" >&2
    fi
  done
  "$GO" build -o "$CACHE/cnibench" ./bench/cnibench
fi
[ "$run_cluster" = 0 ] || "$GO" build -o "$CACHE/clusterbench" ./bench/clusterbench
[ "$run_dnsk8s" = 0 ] || "$GO" build -o "$CACHE/dnsk8s" ./bench/dnsk8s
[ "$run_ingress" = 0 ] || "$GO" build -o "$CACHE/ingress" ./bench/ingress
if [ "$run_svc" = 1 ]; then
  "$GO" build -o "$CACHE/svcbench" ./bench/svcbench
  # The peer: kube-proxy from k8s.io/kubernetes, through the bench-only
  # module. Rebuilt when missing or older than the module's files.
  kp="$PEER_CACHE/kube-proxy-driver"
  mod=bench/svcbench/kubeproxy
  if [ ! -x "$kp" ] || [ -n "$(find "$mod" -newer "$kp" -type f | head -1)" ]; then
    echo "bench: building the kube-proxy peer driver ($mod, k8s.io/kubernetes from the Go module proxy; cold: ~2-3 min) -> $kp" >&2
    mkdir -p "$PEER_CACHE"
    if ! (cd "$mod" && "$GO" build -o "$kp.new" .); then
      rm -f "$kp.new"
      if [ -x "$kp" ]; then
        echo "bench: kube-proxy driver build failed; using the existing $kp" >&2
      else
        echo "bench: cannot build the kube-proxy driver ($mod): see the go errors above (the module proxy must be reachable for a cold build)" >&2
        exit 1
      fi
    else
      mv "$kp.new" "$kp"
    fi
  fi
fi

# The root namespace before, to prove afterwards that nothing changed.
snapshot() {
  {
    echo "## netns"; ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(pnb|podnet-pnb)' || true
    echo "## links"; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
    echo "## routes"; ip route show table all | sort
    echo "## rules"; ip rule show | sort
    echo "## nft tables"; nft list tables 2>/dev/null | sort
    echo "## iptables"; { iptables-save 2>/dev/null || true; } | { grep -vE "^#|^:" || true; } | sort
  }
}
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot >"$before"

rc=0
if [ "$run_cni" = 1 ]; then
  "$CACHE/cnibench" -podnet-bin bin -ref-bin "$CACHE/bin" -lock "$CACHE/run.lock" "$@" || rc=$?
  [ "$run_cluster" = 0 ] || set --  # the flags were cnibench's
fi
if [ "$run_cluster" = 1 ] && [ "$rc" -ne 130 ]; then  # 130: interrupted
  "$CACHE/clusterbench" -podnet-bin bin -lock "$CACHE/run.lock" "$@" || { r=$?; [ "$rc" -ne 0 ] || rc=$r; }
fi
if [ "$run_svc" = 1 ] && [ "$rc" -ne 130 ]; then
  "$CACHE/svcbench" -podnet-bin bin -lock "$CACHE/run.lock" -kube-proxy-driver "$PEER_CACHE/kube-proxy-driver" "$@" || { r=$?; [ "$rc" -ne 0 ] || rc=$r; }
fi
if [ "$run_dns" = 1 ] && [ "$rc" -ne 130 ]; then
  if [ "$what" = dns ]; then bench/dns/run.sh "$@"; else bench/dns/run.sh; fi || { r=$?; [ "$rc" -ne 0 ] || rc=$r; }
fi
if [ "$run_dnsk8s" = 1 ] && [ "$rc" -ne 130 ]; then
  if [ "$what" = dnsk8s ]; then "$CACHE/dnsk8s" -podnet bin/podnet "$@"; else "$CACHE/dnsk8s" -podnet bin/podnet; fi || { r=$?; [ "$rc" -ne 0 ] || rc=$r; }
fi

if [ "$run_ingress" = 1 ] && [ "$rc" -ne 130 ]; then
  if [ "$what" = ingress ]; then "$CACHE/ingress" -lock "$CACHE/run.lock" "$@"; else "$CACHE/ingress" -lock "$CACHE/run.lock"; fi || { r=$?; [ "$rc" -ne 0 ] || rc=$r; }
fi

snapshot >"$after"
if diff -u "$before" "$after" >/dev/null; then
  echo "root namespace: netns, links, routes, rules, nft tables, iptables rules unchanged"
else
  echo "root namespace CHANGED during the run (another process, or a leak of this benchmark):"
  diff -u "$before" "$after" | sed -n '3,$p' | grep -E '^[-+]' || true
  [ "$rc" -ne 0 ] || rc=1
fi
left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(pnb|podnet-pnb)' || true)
if [ -n "$left" ]; then echo "leak: namespaces $left"; [ "$rc" -ne 0 ] || rc=1; fi
exit "$rc"
