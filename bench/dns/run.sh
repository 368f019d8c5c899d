#!/usr/bin/env bash
# podnet's DNS benchmark: `podnet dns` vs CoreDNS v1.15.0, side by side, the
# same Corefile for both, driven by dnsperf. Three cases:
#   hosts     a hosts file of 1000 names, with cache;
#   file      an authoritative zone (file plugin, 1000 A records);
#   forward   forward to a local upstream (another `podnet dns` on 127.0.0.1
#             serving a zone; the same upstream for both servers).
# For each case, -rounds rounds (default 3) of both servers, one after the
# other (the order alternating between rounds), the median of the rounds
# printed; each server pinned to the last CPU
# and dnsperf (and the upstream) to CPU 0: a warm-up, a max-throughput run
# (QPS), a run at a fixed rate (-rate, default 10000 QPS) whose per-query
# latencies give the p99, and the server's RSS (VmRSS after the runs, VmHWM
# the peak). Printed as ratios podnet/CoreDNS next to the goal (QPS >= 1.5x,
# p99 <= 1x). Everything listens on 127.0.0.1 only; no real DNS is queried.
# Processes and temp files are removed by a trap.
#
# CoreDNS comes from $PODNET_COREDNS, else ~/.cache/podnet-coredns/coredns
# (the binary internal/dns/compat uses), built there with `go install
# github.com/coredns/coredns@v1.15.0` when missing.
#
# Usage: bench/dns/run.sh [-duration SECONDS] [-rate QPS] [-rounds N] [-cases hosts,file,forward]
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
duration=5 rate=10000 rounds=3 cases=hosts,file,forward
while [ $# -gt 0 ]; do
  case "$1" in
    -duration) duration=$2; shift 2 ;;
    -rate) rate=$2; shift 2 ;;
    -rounds) rounds=$2; shift 2 ;;
    -cases) cases=$2; shift 2 ;;
    *) echo "dnsbench: unknown flag $1 (flags: -duration SECONDS, -rate QPS, -rounds N, -cases hosts,file,forward)" >&2; exit 2 ;;
  esac
done

podnet=$PWD/bin/podnet
[ -x "$podnet" ] || { echo "dnsbench: $podnet missing: run \`make bench\` (or \`make build\` first)" >&2; exit 2; }
command -v dnsperf >/dev/null || { echo "dnsbench: dnsperf missing: run \`make bench\` (it installs the Debian package dnsperf)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "dnsbench: taskset missing (util-linux)" >&2; exit 2; }

coredns=${PODNET_COREDNS:-}
if [ -z "$coredns" ]; then
  dir=$HOME/.cache/podnet-coredns
  coredns=$dir/coredns
  if [ ! -x "$coredns" ]; then
    echo "dnsbench: building CoreDNS v1.15.0 into $dir (Go module proxy; cold: a few minutes)" >&2
    GOBIN=$dir "$GO" install github.com/coredns/coredns@v1.15.0 || { echo "dnsbench: cannot build CoreDNS v1.15.0" >&2; exit 1; }
  fi
fi
[ -x "$coredns" ] || { echo "dnsbench: CoreDNS binary $coredns missing" >&2; exit 2; }

# CPUs: the server on the last CPU, dnsperf and the upstream on the first.
ncpu=$(nproc)
srv_cpu=$((ncpu - 1)) drv_cpu=0

tmp=$(mktemp -d /tmp/podnet-dnsbench.XXXXXX)
# Every server's pid goes to $tmp/pids (measure runs in a subshell).
cleanup() {
  local p
  if [ -f "$tmp/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$tmp/pids"
    while read -r p; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done <"$tmp/pids"
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# freeport prints a port free for UDP and TCP on 127.0.0.1, below the
# kernel's ephemeral range (ip_local_port_range): a port in it can be taken
# at any moment by another process's outgoing connection, which ss's
# listener check does not see (on a box running other tests, binds failed).
freeport() {
  local p lo
  lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$lo" -gt 12000 ] || lo=32768
  for _ in $(seq 50); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! ss -Hlnu "sport = :$p" | grep -q . && ! ss -Hlnt "sport = :$p" | grep -q .; then
      echo "$p"; return
    fi
  done
  echo "dnsbench: no free port" >&2; exit 1
}

# waitdns PORT NAME: until the server answers NAME (no fixed sleep).
waitdns() {
  for _ in $(seq 200); do
    if dig +time=1 +tries=1 +short @127.0.0.1 -p "$1" "$2" A >/dev/null 2>&1 &&
       [ -n "$(dig +time=1 +tries=1 +short @127.0.0.1 -p "$1" "$2" A 2>/dev/null)" ]; then
      return 0
    fi
    sleep 0.05
  done
  echo "dnsbench: server on 127.0.0.1:$1 does not answer $2" >&2; return 1
}

# Data: 1000 host names, a zone of 1000 names, the upstream's zone.
for i in $(seq 0 999); do
  echo "10.$((i / 250)).$((i % 250)).1 h$i.hosts.bench"
done >"$tmp/hosts"
zone() { # zone ORIGIN
  printf '$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. admin.%s. 1 7200 3600 1209600 300\n@ IN NS ns.%s.\nns IN A 10.255.0.1\n' "$1" "$1" "$1" "$1"
  for i in $(seq 0 999); do echo "n$i IN A 10.$((i / 250)).$((i % 250)).2"; done
}
zone file.bench >"$tmp/db.file.bench"
zone up.bench >"$tmp/db.up.bench"
for i in $(seq 0 999); do echo "h$i.hosts.bench A"; done >"$tmp/q.hosts"
for i in $(seq 0 999); do echo "n$i.file.bench A"; done >"$tmp/q.file"
for i in $(seq 0 999); do echo "n$i.up.bench A"; done >"$tmp/q.forward"

# The upstream of the forward case: podnet dns serving up.bench.
up_port=$(freeport)
printf 'up.bench:%s {\n  bind 127.0.0.1\n  file %s\n}\n' "$up_port" "$tmp/db.up.bench" >"$tmp/Corefile.upstream"
taskset -c "$drv_cpu" "$podnet" dns -quiet -conf "$tmp/Corefile.upstream" >"$tmp/upstream.log" 2>&1 &
echo $! >>"$tmp/pids"
waitdns "$up_port" n1.up.bench

corefile() { # corefile CASE PORT
  case "$1" in
    hosts) printf '.:%s {\n  bind 127.0.0.1\n  hosts %s\n  cache 30\n}\n' "$2" "$tmp/hosts" ;;
    file) printf 'file.bench:%s {\n  bind 127.0.0.1\n  file %s\n}\n' "$2" "$tmp/db.file.bench" ;;
    forward) printf '.:%s {\n  bind 127.0.0.1\n  forward . 127.0.0.1:%s\n}\n' "$2" "$up_port" ;;
  esac
}

# measure CASE SERVER COMMAND...: prints "qps p99_ms rss_kib hwm_kib lost".
measure() {
  local c=$1 name=$2 port pid out
  shift 2
  port=$(freeport)
  corefile "$c" "$port" >"$tmp/Corefile.$c.$name"
  taskset -c "$srv_cpu" "$@" -quiet -conf "$tmp/Corefile.$c.$name" >"$tmp/$c.$name.log" 2>&1 &
  pid=$!
  echo "$pid" >>"$tmp/pids"
  waitdns "$port" "$(head -1 "$tmp/q.$c" | cut -d' ' -f1)" || { cat "$tmp/$c.$name.log" >&2; return 1; }
  local perf=(taskset -c "$drv_cpu" dnsperf -s 127.0.0.1 -p "$port" -d "$tmp/q.$c" -c 8 -q 200)
  "${perf[@]}" -l 2 >/dev/null 2>&1 # warm-up
  out=$("${perf[@]}" -l "$duration" 2>&1)
  local qps lost
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  # p99 at a fixed rate, from each query's latency.
  # (to a file first: awk and sort would share dnsperf's CPU)
  "${perf[@]}" -l 5 -Q "$rate" -v >"$tmp/verbose" 2>/dev/null
  awk '/^> / {print $NF}' "$tmp/verbose" | sort -n >"$tmp/lat"
  local n p99
  n=$(wc -l <"$tmp/lat")
  p99=$(awk -v n="$n" 'NR == int(n * 0.99 + 0.5) {printf "%.3f", $1 * 1000}' "$tmp/lat")
  local rss hwm
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "${qps:-0} ${p99:-0} ${rss:-0} ${hwm:-0} ${lost:-?}"
}

# median FILE: the per-column medians of FILE's lines (lost: the largest).
median() {
  local col n out=()
  n=$(wc -l <"$1")
  for col in 1 2 3 4; do
    out+=("$(awk -v c="$col" '{print $c}' "$1" | sort -g | awk -v n="$n" 'NR == int((n + 1) / 2) {print; exit}')")
  done
  out+=("$(awk '{print $5}' "$1" | sort -g | tail -1)")
  echo "${out[*]}"
}

echo "dnsbench: podnet ($podnet) vs $("$coredns" -version | head -1) ($coredns); server on CPU $srv_cpu, dnsperf on CPU $drv_cpu; median of $rounds rounds of ${duration}s max-throughput runs, p99 at ${rate} QPS"
printf '%-8s %-8s %10s %9s %9s %9s %s\n' case server QPS p99_ms RSS_MiB peak_MiB lost
results=()
IFS=, read -ra want <<<"$cases"
for c in "${want[@]}"; do
  case "$c" in hosts|file|forward) ;; *) echo "dnsbench: unknown case $c" >&2; exit 2 ;; esac
  : >"$tmp/res.$c.podnet"; : >"$tmp/res.$c.coredns"
  for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then
      measure "$c" podnet "$podnet" dns >>"$tmp/res.$c.podnet"
      measure "$c" coredns "$coredns" >>"$tmp/res.$c.coredns"
    else
      measure "$c" coredns "$coredns" >>"$tmp/res.$c.coredns"
      measure "$c" podnet "$podnet" dns >>"$tmp/res.$c.podnet"
    fi
  done
  p=$(median "$tmp/res.$c.podnet")
  k=$(median "$tmp/res.$c.coredns")
  for pair in "podnet:$p" "coredns:$k"; do
    read -r q l r h lost <<<"${pair#*:}"
    printf '%-8s %-8s %10.0f %9s %9.1f %9.1f %s\n' "$c" "${pair%%:*}" "$q" "$l" "$(echo "$r/1024" | bc -l)" "$(echo "$h/1024" | bc -l)" "$lost"
  done
  results+=("$c $p $k")
done
echo
echo "ratios podnet/CoreDNS (goal: QPS >= 1.50, p99 <= 1.00)"
printf '%-8s %8s %8s %8s %8s %s\n' case QPS p99 RSS peak goal
for r in "${results[@]}"; do
  read -r c q1 l1 r1 h1 _ q2 l2 r2 h2 _ <<<"$r"
  rq=$(echo "$q1/$q2" | bc -l) rl=$(echo "$l1/$l2" | bc -l) rr=$(echo "$r1/$r2" | bc -l) rh=$(echo "$h1/$h2" | bc -l)
  goal=met
  if [ "$(echo "$rq < 1.5" | bc -l)" = 1 ] || [ "$(echo "$rl > 1.0" | bc -l)" = 1 ]; then goal="not met"; fi
  printf '%-8s %8.2f %8.2f %8.2f %8.2f %s\n' "$c" "$rq" "$rl" "$rr" "$rh" "$goal"
done
