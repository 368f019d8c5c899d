#!/usr/bin/env bash
# Fails if the test suite left podnet objects behind in this machine's kernel
# or process table: named network namespaces, links, nftables tables, processes.
set -u
bad=0
ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(pn|podnet)' || true)
[ -n "$ns" ] && { echo "leak: network namespaces: $ns"; bad=1; }
links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(pn|podnet)' || true)
[ -n "$links" ] && { echo "leak: links: $links"; bad=1; }
etcns=$(ls /etc/netns 2>/dev/null | grep -E '^(pn|podnet)' || true)
[ -n "$etcns" ] && { echo "leak: /etc/netns entries: $etcns"; bad=1; }
tables=$(nft list tables 2>/dev/null | grep -E 'podnet' || true)
[ -n "$tables" ] && { echo "leak: nftables tables: $tables"; bad=1; }
procs=$(pgrep -a -f 'bin/podnet' 2>/dev/null | grep -v leakcheck || true)
[ -n "$procs" ] && { echo "leak: processes: $procs"; bad=1; }
# containerd and its shims started by tests (internal/cni TestContainerd):
# their config and socket are under a Go test's temp dir, <tmp>/<Test...>/NNN/.
ctrd=$(pgrep -a containerd 2>/dev/null | grep -E ' [^ ]*/Test[^/ ]*/[0-9]+/' || true)
[ -n "$ctrd" ] && { echo "leak: containerd processes: $ctrd"; bad=1; }
# Container processes, found independently of how podnet finds its own: a
# process writing to a shim's container.log (every container's stdout and
# stderr, host-network pods' included), and a process in a network
# namespace that is neither this one nor named in /run/netns (what a pod or
# cluster namespace leaves when something outlives its deletion).
self=$(readlink /proc/$$/ns/net)
named=" "
for f in /run/netns/*; do [ -e "$f" ] && named="$named$(stat -L -c 'net:[%i]' "$f" 2>/dev/null) "; done
cprocs=""
for p in /proc/[0-9]*; do
	pid=${p#/proc/}
	[ "$pid" = "$$" ] && continue
	out=$(readlink "$p/fd/1" 2>/dev/null; readlink "$p/fd/2" 2>/dev/null)
	ns=$(readlink "$p/ns/net" 2>/dev/null) || continue
	why=""
	case "$out" in */container.log*) why="writes a container log" ;; esac
	if [ -z "$why" ] && [ "$ns" != "$self" ]; then
		case "$named" in *" $ns "*) ;; *) why="in unnamed namespace $ns" ;; esac
	fi
	[ -n "$why" ] && cprocs="$cprocs
  $pid ($why): $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-80)"
done
[ -n "$cprocs" ] && { echo "leak: container processes:$cprocs"; bad=1; }
if [ $bad -eq 0 ]; then echo "leakcheck: nothing left behind"; fi
exit $bad
