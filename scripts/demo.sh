#!/usr/bin/env bash
# The README's main job: a 3-node podnet cluster on this machine, a web
# server on one node and a client on another, reaching each other without
# NAT, and a published port reached from a client on the LAN; then a
# 3-replica Deployment behind a Service, reached by ClusterIP from a pod,
# and by NodePort and LoadBalancer address from the LAN; and cluster DNS:
# the Service by name from a pod, a LAN name through the forwarder; and an
# Ingress with two hosts, a rewrite-target and TLS, reached from outside
# through the nodes' ingress proxies over HTTP and HTTPS.
#
# `podnet cluster create` makes every node, the control plane, the underlay
# switch and an "outside" host as network namespaces; nothing touches the
# root namespace's links, routes or rules. The demo keeps its context file
# and cluster directory in a temporary directory, and `podnet cluster delete`
# removes everything at the end, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
WORK=$(mktemp -d /tmp/podnet-demo.XXXXXX)
export PODNET_CONFIG=$WORK/config PODNET_CLUSTERS_DIR=$WORK/clusters
NAME=demo

step()   { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
podnet() { "$BIN/podnet" "$@"; }
podip()  { podnet get pod "$1" -o json | sed -n 's/.*"podIP": "\(.*\)".*/\1/p'; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  step "podnet cluster delete --name $NAME"
  podnet cluster delete --name $NAME
  rm -rf "$WORK"
  left=$(ip netns list | grep -E "^podnet-$NAME-" || true)
  [ -z "$left" ] && echo "demo: everything removed" || echo "demo: LEFT BEHIND: $left"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "podnet cluster create --nodes 3"
podnet cluster create --name $NAME --nodes 3
podnet get nodes -o wide

step "a web server on $NAME-n1 (port 8080 published), a client on $NAME-n2"
podnet run web --node $NAME-n1 -p 8080:8080 --wait -- "$BIN/podnet" echo-server --listen :8080 --name web
podnet run client --node $NAME-n2 --wait -- sleep infinity
podnet get pods -o wide
WEB_IP=$(podip web) CLIENT_IP=$(podip client)

step "across nodes: the client ($CLIENT_IP on n2) pings web ($WEB_IP on n1)"
podnet exec client -- ping -c 2 -W 2 "$WEB_IP"

step "across nodes over HTTP: web sees the client's own pod IP (no NAT between pods)"
answer=$(podnet exec client -- curl -sS -m 5 "http://$WEB_IP:8080/from-client")
echo "$answer"
grep -q "client: $CLIENT_IP" <<<"$answer" || { echo "demo: web saw another address than $CLIENT_IP"; exit 1; }

step "a published port: outside (192.168.250.3) -> node $NAME-n1 (192.168.250.11:8080) -> web"
podnet cluster exec outside -- curl -sS -m 5 "http://192.168.250.11:8080/from-outside"

step "how n2 reaches the other nodes' pods: its routing table"
podnet cluster exec $NAME-n2 -- ip route

step "a Deployment of 3 replicas, spread over the nodes"
podnet create deployment hello --replicas 3 --port 8080 -- "$BIN/podnet" echo-server --listen :8080
podnet rollout status deployment/hello --timeout 120s
podnet get deployments
podnet get pods -l app=hello -o wide

step "a Service in front of it: a ClusterIP, a NodePort on every node, a LoadBalancer address"
podnet expose deployment hello --port 80 --target-port 8080 --type LoadBalancer
podnet get svc hello
podnet get endpointslices -l kubernetes.io/service-name=hello
VIP=$(podnet get svc hello -o jsonpath='{.spec.clusterIP}')
NODEPORT=$(podnet get svc hello -o jsonpath='{.spec.ports[0].nodePort}')

step "the client on n2 calls the ClusterIP $VIP: a new connection each time, a different pod answering"
for i in 1 2 3 4 5 6; do podnet exec client -- curl -sS -m 5 "http://$VIP/" | head -n1; done

step "outside reaches the Service through every node's NodePort $NODEPORT"
for ip in 192.168.250.11 192.168.250.12 192.168.250.13; do
  printf '%s:%s -> ' "$ip" "$NODEPORT"
  podnet cluster exec outside -- curl -sS -m 5 "http://$ip:$NODEPORT/" | head -n1
done

LBIP=""
for i in $(seq 50); do
  LBIP=$(podnet get svc hello -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [ -n "$LBIP" ] && break
  sleep 0.2
done
if [ -n "$LBIP" ]; then
  step "outside reaches the Service's LoadBalancer address $LBIP"
  for i in 1 2 3; do podnet cluster exec outside -- curl -sS -m 5 "http://$LBIP/" | head -n1; done
fi

step "cluster DNS: the client's resolv.conf names the node's own DNS server, 10.96.0.10"
podnet exec client -- cat /etc/resolv.conf

step "the client finds the Service by name: the search path makes 'hello' hello.default.svc.cluster.local"
podnet exec client -- curl -sS -m 5 http://hello/ | head -n1
podnet exec client -- curl -sS -m 5 http://hello.default.svc.cluster.local/ | head -n1
printf 'dig +short hello.default.svc.cluster.local -> '
podnet exec client -- dig +short hello.default.svc.cluster.local

step "a name of the LAN, through the forwarder: outside runs 'podnet dns' with a hosts file and a zone"
printf 'dig +short www.lan -> '
podnet exec client -- dig +short www.lan | tr '\n' ' '; echo
podnet exec client -- getent hosts outside.lan

step "/etc/hosts before DNS: the pod's own name comes from its /etc/hosts, a Service's from DNS"
podnet exec client -- getent hosts client
podnet exec client -- getent hosts hello

step "an Ingress with two hosts, a rewrite-target and TLS, served by every node's 'podnet ingress'"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=hello.example" \
  -addext "subjectAltName=DNS:hello.example" -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
podnet create secret tls hello-tls --cert "$WORK/tls.crt" --key "$WORK/tls.key"
podnet apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hello
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  tls:
  - hosts: [hello.example]
    secretName: hello-tls
  rules:
  - host: hello.example
    http:
      paths:
      - path: /app(/|$)(.*)
        pathType: ImplementationSpecific
        backend: {service: {name: hello, port: {number: 80}}}
  - host: api.example
    http:
      paths:
      - path: /app(/|$)(.*)
        pathType: ImplementationSpecific
        backend: {service: {name: hello, port: {number: 80}}}
YAML
for i in $(seq 50); do
  podnet get ingress hello | grep -q 192.168.250 && break
  sleep 0.1 # the status loop publishes the nodes' addresses
done
podnet get ingress hello

N1=192.168.250.11 N3=192.168.250.13
step "outside -> http://hello.example/app/greeting through node n1: 308 to HTTPS (the host has TLS)"
podnet cluster exec outside -- curl -sS -m 5 -o /dev/null -w '%{http_code} -> %{redirect_url}\n' \
  --resolve hello.example:80:$N1 http://hello.example/app/greeting

step "outside -> https://hello.example/app/greeting through node n3, checking the Secret's certificate: the app sees /greeting"
podnet cluster exec outside -- curl -sS -m 5 --cacert "$WORK/tls.crt" \
  --resolve hello.example:443:$N3 https://hello.example/app/greeting

step "outside -> http://api.example/app/v1/items (no TLS on this host): rewritten to /v1/items"
podnet cluster exec outside -- curl -sS -m 5 --resolve api.example:80:$N1 http://api.example/app/v1/items

step "an unknown host gets the default backend's 404"
podnet cluster exec outside -- curl -sS -m 5 -w ' (HTTP %{http_code})\n' --resolve nobody.example:80:$N1 http://nobody.example/

ING_LB=$(podnet get svc -n kube-system podnet-ingress -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
if [ -n "$ING_LB" ]; then
  step "the Ingresses' own LAN address $ING_LB (the Service kube-system/podnet-ingress, type LoadBalancer, in front of every node's proxy)"
  podnet get svc -n kube-system podnet-ingress
  podnet cluster exec outside -- curl -sS -m 5 --cacert "$WORK/tls.crt" \
    --resolve hello.example:443:$ING_LB https://hello.example/app/through-the-lb
fi

step "the rules that do it, on n2: one map lookup per packet, whatever the number of Services"
podnet cluster exec $NAME-n2 -- nft list map inet podnet service-ips
podnet cluster exec $NAME-n2 -- nft list map inet podnet service-eps

echo
echo "demo: it works"
