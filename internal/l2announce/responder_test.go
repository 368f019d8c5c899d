package l2announce

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeConn hands frames to the responder and collects what it writes.
type fakeConn struct {
	in     chan []byte
	out    chan Packet
	once   sync.Once
	closed chan struct{}
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 16), out: make(chan Packet, 64), closed: make(chan struct{})}
}

func (c *fakeConn) ReadFrame(b []byte) (int, bool, error) {
	select {
	case f := <-c.in:
		return copy(b, f), false, nil
	case <-c.closed:
		return 0, false, errors.New("closed")
	}
}

func (c *fakeConn) WriteFrame(b []byte) error {
	p, err := Parse(b)
	if err != nil {
		return err
	}
	c.out <- p
	return nil
}

func (c *fakeConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

func (c *fakeConn) next(t *testing.T) (Packet, bool) {
	t.Helper()
	select {
	case p := <-c.out:
		return p, true
	case <-time.After(200 * time.Millisecond):
		return Packet{}, false
	}
}

func withSchedule(t *testing.T, s ...time.Duration) {
	old := GratuitousSchedule
	GratuitousSchedule = s
	t.Cleanup(func() { GratuitousSchedule = old })
}

func TestResponder(t *testing.T) {
	withSchedule(t, 0, 20*time.Millisecond)
	c := newFakeConn()
	r := NewResponder(c, macB, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	// Nothing owned: no answer.
	c.in <- wireRequest
	if p, ok := c.next(t); ok {
		t.Fatalf("answered %+v while owning nothing", p)
	}

	taken, released := r.Set([]netip.Addr{lb1, netip.MustParseAddr("fd00::1")})
	if len(taken) != 1 || taken[0] != lb1 || len(released) != 0 {
		t.Fatalf("Set: taken %v released %v", taken, released)
	}
	// Two rounds of gratuitous request + reply.
	for i := range 4 {
		p, ok := c.next(t)
		if !ok {
			t.Fatalf("gratuitous frame %d missing", i)
		}
		if p.SenderIP != lb1 || p.TargetIP != lb1 || p.SenderHW.String() != macB.String() {
			t.Fatalf("frame %d: %+v is not a gratuitous ARP for %s at %s", i, p, lb1, macB)
		}
	}
	if p, ok := c.next(t); ok {
		t.Fatalf("more than the schedule's announcements: %+v", p)
	}

	c.in <- wireRequest
	p, ok := c.next(t)
	if !ok {
		t.Fatal("no reply to a request for an owned address")
	}
	req, _ := Parse(wireRequest)
	if want := Reply(req, macB); p.String() != want.String() {
		t.Fatalf("reply %s, want %s", p, want)
	}
	// Not an ARP frame, a reply, a request for another address: ignored.
	ip := append([]byte{}, wireRequest...)
	ip[13] = 0
	c.in <- ip
	rep, _ := Reply(req, macA).Marshal()
	c.in <- rep
	if p, ok := c.next(t); ok {
		t.Fatalf("answered %s", p)
	}

	if got := r.Owned(); len(got) != 1 || got[0] != lb1 {
		t.Fatalf("Owned %v", got)
	}
	if _, released := r.Set(nil); len(released) != 1 {
		t.Fatalf("released %v", released)
	}
	c.in <- wireRequest
	if p, ok := c.next(t); ok {
		t.Fatalf("answered %s after giving the address up", p)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// An address given up before its announcements are done is not announced
// any more.
func TestResponderStopsAnnouncingReleased(t *testing.T) {
	withSchedule(t, 0, 100*time.Millisecond)
	c := newFakeConn()
	r := NewResponder(c, macB, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	r.Set([]netip.Addr{lb1})
	c.next(t)
	c.next(t)
	r.Set(nil)
	if p, ok := c.next(t); ok {
		t.Fatalf("announced %s after giving it up", p)
	}
}

func TestResponderReadError(t *testing.T) {
	c := newFakeConn()
	r := NewResponder(c, macB, nil)
	c.Close()
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run hid a read error")
	}
}

var _ Conn = (*fakeConn)(nil)
