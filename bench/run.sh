#!/usr/bin/env bash
# podnet's benchmark (`make bench`, which first installs iptables, hyperfine
# and iperf3 and builds bin/). Runs two drivers, then checks that the root
# network namespace is exactly as before:
#   cnibench      podnet-cni vs the reference CNI plugins (built from the Go
#                 module proxy into bench/.cache/bin), and `podnet run --wait`;
#   clusterbench  local clusters (`podnet cluster create`): cross-node
#                 throughput vs the underlay, create time, join → routes,
#                 agent memory.
# Usage: bench/run.sh [cni|cluster] [FLAGS]. With `cni` or `cluster` only
# that driver runs and FLAGS go to it; otherwise both run and FLAGS go to
# cnibench (e.g. `bench/run.sh -iters 20 -phases cni`). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CACHE=bench/.cache
REF_VERSION=${CNI_PLUGINS_VERSION:-latest}
what=all
case "${1:-}" in
  cni|cluster) what=$1; shift ;;
esac
run_cni=0 run_cluster=0
[ "$what" = cluster ] || run_cni=1
[ "$what" = cni ] || run_cluster=1

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
if [ "$run_cluster" = 1 ]; then
  command -v iperf3 >/dev/null || { echo "bench: iperf3 missing (the cluster throughput needs it): run \`make bench\`" >&2; exit 2; }
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
