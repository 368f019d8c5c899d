// Package cluster builds and removes a whole podnet cluster on one Linux
// machine, like kind but with the real kernel datapath: every host is a named
// network namespace, joined by veth cables to a switch (a bridge in a
// namespace of its own), and every node runs its own `podnet agent` process.
//
// The topology, for cluster C with three nodes (see Plan):
//
//	podnet-C-sw       switch: bridge pnbr0, one port pnp-<host> per cable
//	podnet-C-cp       control plane, pneth0 192.168.250.2: `podnet server`,
//	                  etcd on http://192.168.250.2:2379
//	podnet-C-outside  a client on the LAN, pneth0 192.168.250.3
//	podnet-C-n1..n3   nodes C-n1..C-n3, pneth0 192.168.250.11..13: `podnet agent`
//	                  (with --netns naming the node's namespace)
//
// With an external etcd (Spec.EtcdMembers, e.g. 3), each member is a host
// of its own, podnet-C-etcd1..3 at 192.168.250.4..6, running Debian's
// `etcd` (clients on :2379, peers on :2380, data in the cluster
// directory); the control plane's `podnet server --etcd-endpoints` then
// runs only the controllers, and every agent and the CLI get all three
// endpoints.
//
// With two subnets, even nodes sit on a second switch podnet-C-sw2
// (192.168.251.0/24, node i at 192.168.251.<10+i>), joined to the first by
// podnet-C-router (pneth0 192.168.250.1, pneth1 192.168.251.1, forwarding
// on); every host on one subnet has a route to the other via the router.
//
// Links are created inside their namespaces (never in the caller's), so
// their names only need to be unique per namespace; all start with "pn".
//
// Processes are started detached (a session of their own) from a thread
// inside the host's namespace, sharing the caller's mount namespace, with
// logs, pid files and every directory they use under the cluster directory
// (default /var/lib/podnet/clusters/C). Delete kills every podnet process
// (and etcd member) whose arguments name that directory and every process
// inside one of the cluster's namespaces, then removes pod namespaces
// (from the agents' on-disk records), the cluster's namespaces and the
// directory. It works
// from the directory and the namespace names alone, so it is idempotent and
// needs no running process.
//
// The context file (Config, like a kubeconfig) tells the CLI how to reach a
// cluster: its etcd endpoints and the namespace to dial them from.
package cluster
