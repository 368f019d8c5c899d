// Package compat holds the comparison of `podnet dns` with CoreDNS v1.15.0:
// the same Corefile and data served by both, the same queries asked of
// both, and the replies compared on rcode, flags and the three sections
// (TTLs aside). The CoreDNS binary is built once with `go install
// github.com/coredns/coredns@v1.15.0` into a cache outside the repository
// ($PODNET_COREDNS, or ~/.cache/podnet-coredns/coredns).
package compat
