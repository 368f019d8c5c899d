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
if [ $bad -eq 0 ]; then echo "leakcheck: nothing left behind"; fi
exit $bad
