package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeKubelet plays the nodes' agents for controller tests: it binds
// unscheduled pods to its nodes in turn (when nodes are given), gives
// bound pods an IP and phase Running, turns them Ready readyAfter after
// they are first seen (unless held not ready), and removes pods marked
// for deletion, as an agent does after stopping them.
type fakeKubelet struct {
	s          *store.Store
	nodes      []string
	readyAfter time.Duration

	mu       sync.Mutex
	seen     map[types.UID]time.Time
	notReady map[string]bool // pod names held not ready
	stopped  map[string]bool // nodes whose pods are left alone (dead)
	next     int
	bound    int
}

// holdLabel on a pod keeps it from turning Ready.
const holdLabel = "test.podnet.io/never-ready"

func startKubelet(t *testing.T, s *store.Store, readyAfter time.Duration, nodes ...string) *fakeKubelet {
	t.Helper()
	f := &fakeKubelet{s: s, nodes: nodes, readyAfter: readyAfter, seen: map[types.UID]time.Time{}, notReady: map[string]bool{}, stopped: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k := make(kick, 1)
		go watchKeys(ctx, s.Client(), store.ListKey(podKind, ""), k)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			f.pass(ctx)
			select {
			case <-ctx.Done():
			case <-k:
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fakeKubelet) holdNotReady(pod string, hold bool) {
	f.mu.Lock()
	f.notReady[pod] = hold
	f.mu.Unlock()
}

// stopNode makes the kubelet ignore a node's pods, as a dead agent.
func (f *fakeKubelet) stopNode(n string) {
	f.mu.Lock()
	f.stopped[n] = true
	f.mu.Unlock()
}

func (f *fakeKubelet) pass(ctx context.Context) {
	objs, _, err := f.s.List(ctx, podKind, "")
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if f.stopped[p.Spec.NodeName] {
			continue
		}
		if p.Spec.NodeName == "" {
			if len(f.nodes) == 0 || p.DeletionTimestamp != nil {
				continue
			}
			n := f.nodes[f.bound%len(f.nodes)]
			f.bound++
			f.s.Mutate(ctx, podKind, p.Namespace, p.Name, func(o api.Object) error {
				cur := o.(*corev1.Pod)
				if cur.UID == p.UID && cur.Spec.NodeName == "" {
					cur.Spec.NodeName = n
				}
				return nil
			})
			continue
		}
		if p.DeletionTimestamp != nil {
			_, err := f.s.Delete(ctx, podKind, p.Namespace, p.Name, store.DeleteOptions{Force: true, UID: p.UID})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				panic(err)
			}
			continue
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		first, ok := f.seen[p.UID]
		if !ok {
			first = time.Now()
			f.seen[p.UID] = first
		}
		ready := !f.notReady[p.Name] && p.Labels[holdLabel] == "" && time.Since(first) >= f.readyAfter
		ip := p.Status.PodIP
		if ip == "" {
			f.next++
			ip = fmt.Sprintf("10.244.%d.%d", f.next/250, f.next%250+2)
		}
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP == ip && podReadyCondition(p).Status == st {
			continue
		}
		f.s.Mutate(ctx, podKind, p.Namespace, p.Name, func(o api.Object) error {
			cur := o.(*corev1.Pod)
			if cur.UID != p.UID || cur.DeletionTimestamp != nil {
				return nil
			}
			cur.Status.Phase = corev1.PodRunning
			cur.Status.PodIP = ip
			cur.Status.PodIPs = []corev1.PodIP{{IP: ip}}
			setPodCondition(cur, corev1.PodCondition{Type: corev1.PodReady, Status: st}, metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
			return nil
		})
	}
}

// revision is the store's current etcd revision (it moves on every write).
func revision(t *testing.T, s *store.Store) int64 {
	t.Helper()
	r, err := s.Client().Get(context.Background(), "/podnet/none")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}
