package kubernetes

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeSource is an in-memory informer.Source: objects by kind, and the
// watchers told about each change.
type fakeSource struct {
	mu       sync.Mutex
	rev      int64
	objs     map[string]map[string]api.Object // kind → ns/name → object
	watchers map[string][]chan store.Event
}

func newFake() *fakeSource {
	return &fakeSource{objs: map[string]map[string]api.Object{}, watchers: map[string][]chan store.Event{}}
}

func (f *fakeSource) List(ctx context.Context, k *api.Kind, ns string) ([]api.Object, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Object
	for _, o := range f.objs[k.Resource] {
		out = append(out, o)
	}
	return out, f.rev, nil
}

func (f *fakeSource) Watch(ctx context.Context, k *api.Kind, ns string, rev int64) <-chan store.Event {
	ch := make(chan store.Event, 100)
	f.mu.Lock()
	f.watchers[k.Resource] = append(f.watchers[k.Resource], ch)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, c := range f.watchers[k.Resource] {
			if c == ch {
				f.watchers[k.Resource] = append(f.watchers[k.Resource][:i], f.watchers[k.Resource][i+1:]...)
				close(ch)
				return
			}
		}
	}()
	return ch
}

func (f *fakeSource) put(o api.Object, typ store.EventType) {
	k, err := api.KindOf(o)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	o.SetResourceVersion(strconv.FormatInt(f.rev, 10))
	if f.objs[k.Resource] == nil {
		f.objs[k.Resource] = map[string]api.Object{}
	}
	kk := o.GetNamespace() + "/" + o.GetName()
	if typ == store.Deleted {
		delete(f.objs[k.Resource], kk)
	} else {
		f.objs[k.Resource][kk] = o
	}
	for _, ch := range f.watchers[k.Resource] {
		ch <- store.Event{Type: typ, Object: o, Revision: f.rev}
	}
}

func (f *fakeSource) add(objs ...api.Object) {
	for _, o := range objs {
		f.put(o, store.Added)
	}
}

func (f *fakeSource) del(o api.Object) { f.put(o, store.Deleted) }

// useFake makes every kubernetes block of the test read f.
func useFake(t *testing.T, f *fakeSource) {
	old := NewSource
	NewSource = func(store.ClientConfig) (informer.Source, func(), error) { return f, func() {}, nil }
	t.Cleanup(func() { NewSource = old })
}

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func svc(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.ClusterIP = clusterIP
	if clusterIP != "" {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	s.Spec.Ports = ports
	return s
}

func port(name string, proto corev1.Protocol, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: p}
}

type ep struct {
	ip, hostname, pod string
	notReady          bool
}

func slice(ns, svcName, name string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{api.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		r := !e.notReady
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: &r}}
		if e.hostname != "" {
			h := e.hostname
			d.Hostname = &h
		}
		if e.pod != "" {
			d.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod}
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func eport(name string, proto corev1.Protocol, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &p}
}

func pod(ns, name, ip string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	return p
}
