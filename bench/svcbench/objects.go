package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// objects is the file both drivers read (-objects): the Services and
// EndpointSlices to load for the full sync, then changed versions of some
// slices, applied one at a time with a (partial) sync after each. The
// kube-proxy driver (bench/svcbench/kubeproxy) decodes the same fields.
type objects struct {
	Services []*corev1.Service            `json:"services"`
	Slices   []*discoveryv1.EndpointSlice `json:"endpointSlices"`
	Updates  []*discoveryv1.EndpointSlice `json:"updates"`
}

// Addresses of the bench's topology (see topo.go). All of them exist only
// inside the namespaces a run creates.
var (
	clusterCIDR = netip.MustParsePrefix("10.128.0.0/9") // pods: client, server, fake endpoints
	serviceCIDR = netip.MustParsePrefix("10.96.0.0/12") // ClusterIPs
	firstSvcIP  = netip.MustParseAddr("10.96.1.0")      // svc i gets firstSvcIP + i
	firstFakeEP = netip.MustParseAddr("10.129.0.0")     // endpoint k of the fake ones
	firstNewEP  = netip.MustParseAddr("10.131.0.0")     // addresses the updates bring in
	clientIP    = netip.MustParseAddr("10.128.1.2")     // client namespace
	clientGW    = netip.MustParseAddr("10.128.1.1")     // node side of the client's veth
	serverIP    = netip.MustParseAddr("10.128.2.2")     // server namespace: serverIP … +serverIPs-1
	serverGW    = netip.MustParseAddr("10.128.2.1")     // node side of the server's veth
	nodeIP      = netip.MustParseAddr("10.250.0.1")     // the node's own address, on a dummy link
	serverIPs   = 10                                    // the server answers on this many addresses
	svcPort     = int32(80)                             // every Service's port
	targetPort  = int32(8080)                           // … and its endpoints' port
	iperfPort   = int32(5201)                           // the iperf3 Service's port and target
)

// genSpec describes one objects file.
type genSpec struct {
	services int // Services, each with eps endpoints
	eps      int
	// targets: how many Services (spread evenly over the list, always
	// including the first) have the server's addresses as endpoints, so
	// that a connect through their ClusterIP reaches the server; the
	// others have fake endpoints nobody ever connects to.
	targets int
	// targetEPs overrides the targets' endpoints (address . port); nil:
	// the server's serverIPs addresses on targetPort.
	targetEPs []netip.AddrPort
	port      int32 // Service port (target port = the endpoints' port)
	updates   int   // slices changed one at a time after the full sync
}

func addAddr(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func svcName(i int) string { return fmt.Sprintf("svc-%05d", i) }

func svcIP(i int) netip.Addr { return addAddr(firstSvcIP, i) }

// targetIndexes are the targets' indexes: at most half the Services, at
// least one.
func (g genSpec) targetIndexes() []int {
	t := min(g.targets, g.services/2)
	if t < 1 {
		t = 1
	}
	var out []int
	for j := 0; j < t; j++ {
		out = append(out, j*g.services/t)
	}
	return out
}

// generate builds the objects of g: Services in namespace "bench", one
// EndpointSlice each, all endpoints ready.
func generate(g genSpec) *objects {
	if g.port == 0 {
		g.port = svcPort
	}
	targets := map[int]bool{}
	for _, i := range g.targetIndexes() {
		targets[i] = true
	}
	server := g.targetEPs
	if server == nil {
		for j := 0; j < serverIPs; j++ {
			server = append(server, netip.AddrPortFrom(addAddr(serverIP, j), uint16(targetPort)))
		}
	}
	o := &objects{}
	fake := 0
	for i := 0; i < g.services; i++ {
		var eps []netip.AddrPort
		if targets[i] {
			eps = server
		} else {
			for j := 0; j < g.eps; j++ {
				eps = append(eps, netip.AddrPortFrom(addAddr(firstFakeEP, fake), uint16(targetPort)))
				fake++
			}
		}
		o.Services = append(o.Services, service(i, g.port, eps[0].Port()))
		o.Slices = append(o.Slices, slice(i, eps, 1))
	}
	// Updates: replace the first endpoint of non-target Services spread
	// over the list (a rolled pod), one Service per update.
	var plain []int
	for i := 0; i < g.services; i++ {
		if !targets[i] {
			plain = append(plain, i)
		}
	}
	step := max(1, len(plain)/(g.updates+1))
	for u := 0; u < min(g.updates, len(plain)); u++ {
		i := plain[(len(plain)/2+u*step)%len(plain)]
		eps := endpointsOf(o.Slices[i])
		eps[0] = netip.AddrPortFrom(addAddr(firstNewEP, u), eps[0].Port())
		o.Updates = append(o.Updates, slice(i, eps, 2+u))
	}
	return o
}

func endpointsOf(s *discoveryv1.EndpointSlice) []netip.AddrPort {
	var out []netip.AddrPort
	for _, e := range s.Endpoints {
		out = append(out, netip.AddrPortFrom(netip.MustParseAddr(e.Addresses[0]), uint16(*s.Ports[0].Port)))
	}
	return out
}

func service(i int, port int32, target uint16) *corev1.Service {
	ip := svcIP(i).String()
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: svcName(i), UID: types.UID("uid-" + svcName(i)), ResourceVersion: "1"},
		Spec: corev1.ServiceSpec{
			Type:            corev1.ServiceTypeClusterIP,
			ClusterIP:       ip,
			ClusterIPs:      []string{ip},
			IPFamilies:      []corev1.IPFamily{corev1.IPv4Protocol},
			SessionAffinity: corev1.ServiceAffinityNone,
			Selector:        map[string]string{"app": svcName(i)},
			Ports: []corev1.ServicePort{{
				Protocol:   corev1.ProtocolTCP,
				Port:       port,
				TargetPort: intstr.FromInt32(int32(target)),
			}},
		},
	}
}

func slice(i int, eps []netip.AddrPort, rev int) *discoveryv1.EndpointSlice {
	tcp := corev1.ProtocolTCP
	port := int32(eps[0].Port())
	name := ""
	yes := true
	s := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       "bench",
			Name:            svcName(i) + "-bench",
			ResourceVersion: fmt.Sprint(rev),
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svcName(i),
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &tcp, Port: &port}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.Addr().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes, Terminating: new(bool)},
			NodeName:   ptr("pnb-other"),
		})
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func writeObjects(path string, o *objects) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// readObjects decodes an objects file strictly enough to catch a file of
// another format: every slice must name its Service.
func readObjects(path string) (*objects, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseObjects(b)
}

func parseObjects(b []byte) (*objects, error) {
	var o objects
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("objects: %w", err)
	}
	for i, s := range append(append([]*discoveryv1.EndpointSlice{}, o.Slices...), o.Updates...) {
		if s == nil || s.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, fmt.Errorf("objects: endpointSlices/updates[%d]: no %s label", i, discoveryv1.LabelServiceName)
		}
	}
	for i, s := range o.Services {
		if s == nil || s.Name == "" {
			return nil, fmt.Errorf("objects: services[%d]: no name", i)
		}
	}
	return &o, nil
}
