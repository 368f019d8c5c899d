#!/usr/bin/env bash
# The README's main job: a podnet node with a sample app, answering requests.
#
# Everything runs in network namespaces this script creates: the node
# (pndemo-node) runs `podnet up`; an external host (pndemo-out) sits on its
# uplink, 192.168.99.0/24. The root namespace's links, routes and rules are
# not touched, and everything is removed at the end, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
NODE=pndemo-node OUT=pndemo-out
NODE_IP=192.168.99.1 OUT_IP=192.168.99.2
WORK=$(mktemp -d /tmp/podnet-demo.XXXXXX)
UP_PID=

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
pn()   { nsenter --net=/run/netns/$NODE "$BIN/podnet" "$@"; }
out()  { ip netns exec $OUT "$@"; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    step "cleaning up: deleting pods, stopping the node"
    for p in $(pn get pods -o name 2>/dev/null); do pn delete "${p%%/*}" "${p#*/}" --timeout 20s >/dev/null; done
    kill "$UP_PID"; wait "$UP_PID" 2>/dev/null
  fi
  # If the node died first, remove what its pods left by hand.
  pkill -9 -f "$WORK" 2>/dev/null
  for rec in "$WORK"/agent/node1/pods/*/pod.json; do
    [ -f "$rec" ] || continue
    ns=$(sed -n 's/.*"netns": *"\([^"]*\)".*/\1/p' "$rec")
    [ -n "$ns" ] && { ip netns del "$ns" 2>/dev/null; rm -rf "/etc/netns/$ns"; }
  done
  ip netns del $NODE 2>/dev/null; ip netns del $OUT 2>/dev/null
  rm -rf "$WORK"
  echo "demo: everything removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in $NODE $OUT; do ip netns del $ns 2>/dev/null || true; done

step "a node and an external host, joined by a cable (veth)"
ip netns add $NODE; ip netns add $OUT
ip -n $NODE link add pndemo0 type veth peer name pndemo1 netns $OUT
ip -n $NODE addr add $NODE_IP/24 dev pndemo0; ip -n $NODE link set pndemo0 up; ip -n $NODE link set lo up
ip -n $OUT addr add $OUT_IP/24 dev pndemo1; ip -n $OUT link set pndemo1 up; ip -n $OUT link set lo up
echo "node $NODE_IP  <-->  outside $OUT_IP"

step "podnet up: the store (embedded etcd) and the node agent"
nsenter --net=/run/netns/$NODE "$BIN/podnet" up --node-name node1 --node-ip $NODE_IP --pod-cidr 10.244.0.0/24 \
  --data-dir "$WORK/etcd" --state-dir "$WORK/agent" --cni-conf-dir "$WORK/net.d" \
  --cni-bin-dir "$BIN" --cni-data-dir "$WORK/cni" >"$WORK/up.log" 2>&1 &
UP_PID=$!
for i in $(seq 100); do pn get pods >/dev/null 2>&1 && break; sleep 0.1; done
pn get pods >/dev/null || { cat "$WORK/up.log"; exit 1; }
echo "node1 ready"

step "pods: two web servers (one publishes port 8080) and a client"
pn run web1 --wait -p 8080:8080 -l app=web -- "$BIN/podnet" echo-server --listen :8080 --name web1
pn run web2 --wait -l app=web -- "$BIN/podnet" echo-server --listen :8080 --name web2
pn run client --wait -- sleep infinity
pn get pods -o wide
WEB2_IP=$(pn get pod web2 -o json | sed -n 's/.*"podIP": "\(.*\)".*/\1/p')

step "switching: the client pings web2 across the bridge"
pn exec client -- ping -c 2 -W 2 "$WEB2_IP"

step "pod to pod over HTTP: client -> web2 ($WEB2_IP:8080)"
pn exec client -- curl -sS -m 5 "http://$WEB2_IP:8080/"

step "a published port: the outside host -> node $NODE_IP:8080 -> web1"
out curl -sS -m 5 "http://$NODE_IP:8080/from-outside"

step "NAT: the client reaches the outside host, which sees the node's address"
out socat -T5 TCP-LISTEN:7000,reuseaddr 'SYSTEM:echo outside saw $SOCAT_PEERADDR' &
LISTENER=$!
sleep 0.3
pn exec client -- socat -T3 - TCP:$OUT_IP:7000
wait $LISTENER

step "the node's datapath: one nftables table"
nsenter --net=/run/netns/$NODE nft list set inet podnet masq-src4
nsenter --net=/run/netns/$NODE nft list map inet podnet hostports4

echo
echo "demo: it works"
