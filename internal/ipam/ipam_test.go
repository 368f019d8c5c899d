package ipam

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

func testRange(t *testing.T, cidr string) Range {
	t.Helper()
	p := netip.MustParsePrefix(cidr)
	s, e := DefaultBounds(p)
	return Range{Subnet: p, Start: s, End: e, Gateway: s}
}

func TestDefaultBounds(t *testing.T) {
	for _, c := range []struct{ p, s, e string }{
		{"10.22.0.0/24", "10.22.0.1", "10.22.0.254"},
		{"10.22.0.0/30", "10.22.0.1", "10.22.0.2"},
		{"fd00::/120", "fd00::1", "fd00::ff"},
	} {
		s, e := DefaultBounds(netip.MustParsePrefix(c.p))
		if s.String() != c.s || e.String() != c.e {
			t.Errorf("%s: got %s-%s want %s-%s", c.p, s, e, c.s, c.e)
		}
	}
}

func TestAllocateRoundRobinAndExhaustion(t *testing.T) {
	for _, name := range []string{"mem", "disk"} {
		t.Run(name, func(t *testing.T) {
			var st Store = NewMemStore()
			if name == "disk" {
				d, err := NewDiskStore(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				d.NoSync = true
				st = d
			}
			a := &Allocator{Store: st}
			r := testRange(t, "10.22.0.0/29") // .1 gateway, .2-.6 usable
			var got []string
			for i := 0; i < 5; i++ {
				ip, err := a.Allocate(string(rune('a'+i)), r, netip.Addr{})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ip.String())
			}
			want := []string{"10.22.0.2", "10.22.0.3", "10.22.0.4", "10.22.0.5", "10.22.0.6"}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("got %v want %v", got, want)
				}
			}
			_, err := a.Allocate("z", r, netip.Addr{})
			if !errors.Is(err, ErrExhausted) || err.Error() != "no free address in range 10.22.0.0/29 (5 in use)" {
				t.Fatalf("want exhausted error, got %v", err)
			}
			// Release b (.3): next allocation wraps round to it.
			if err := a.Release("b"); err != nil {
				t.Fatal(err)
			}
			ip, err := a.Allocate("y", r, netip.Addr{})
			if err != nil || ip.String() != "10.22.0.3" {
				t.Fatalf("after release got %v %v", ip, err)
			}
			// Round robin: release c (.4), then the next goes after .3, i.e. .4.
			_ = a.Release("c")
			_ = a.Release("d")
			ip, _ = a.Allocate("x", r, netip.Addr{})
			if ip.String() != "10.22.0.4" {
				t.Fatalf("round robin got %v", ip)
			}
		})
	}
}

func TestAllocateRequested(t *testing.T) {
	a := &Allocator{Store: NewMemStore()}
	r := testRange(t, "10.22.0.0/24")
	if ip, err := a.Allocate("a", r, netip.MustParseAddr("10.22.0.50")); err != nil || ip.String() != "10.22.0.50" {
		t.Fatalf("got %v %v", ip, err)
	}
	if _, err := a.Allocate("b", r, netip.MustParseAddr("10.22.0.50")); !errors.Is(err, ErrIPTaken) {
		t.Fatalf("want taken, got %v", err)
	}
	if _, err := a.Allocate("b", r, netip.MustParseAddr("10.23.0.50")); err == nil {
		t.Fatal("out of range address accepted")
	}
	if _, err := a.Allocate("b", r, netip.MustParseAddr("10.22.0.1")); err == nil {
		t.Fatal("gateway accepted")
	}
}

func TestPorts(t *testing.T) {
	a := &Allocator{Store: NewMemStore()}
	tcp80 := Port{Proto: "tcp", Port: 8080}
	if err := a.ReservePorts("a", []Port{tcp80, {Proto: "udp", Port: 8080}}); err != nil {
		t.Fatal(err)
	}
	err := a.ReservePorts("b", []Port{{Proto: "udp", Port: 9}, {Proto: "tcp", Port: 8080, HostIP: netip.MustParseAddr("127.0.0.1")}})
	var pc *PortConflictError
	if !errors.As(err, &pc) || !errors.Is(err, ErrPortTaken) || pc.Owner != "a" {
		t.Fatalf("want conflict with a, got %v", err)
	}
	if ps, _ := a.Store.Ports(); len(ps) != 2 {
		t.Fatalf("failed reservation changed state: %v", ps)
	}
	// Distinct host addresses coexist.
	h1 := Port{Proto: "tcp", Port: 7000, HostIP: netip.MustParseAddr("10.0.0.1")}
	h2 := Port{Proto: "tcp", Port: 7000, HostIP: netip.MustParseAddr("10.0.0.2")}
	if err := a.ReservePorts("c", []Port{h1}); err != nil {
		t.Fatal(err)
	}
	if err := a.ReservePorts("d", []Port{h2}); err != nil {
		t.Fatal(err)
	}
	_ = a.Release("a")
	if err := a.ReservePorts("b", []Port{tcp80}); err != nil {
		t.Fatal(err)
	}
}

func TestDiskStoreConcurrentNoDuplicates(t *testing.T) {
	dir := t.TempDir()
	r := testRange(t, "10.22.0.0/24")
	var mu sync.Mutex
	seen := map[netip.Addr]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := NewDiskStore(dir)
			if err != nil {
				t.Error(err)
				return
			}
			st.NoSync = true
			unlock, err := st.Lock(10e9)
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			ip, err := (&Allocator{Store: st}).Allocate(string(rune('A'+i)), r, netip.Addr{})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[ip] {
				t.Errorf("duplicate %s", ip)
			}
			seen[ip] = true
		}(i)
	}
	wg.Wait()
}

func TestDiskRecordsAndPortFiles(t *testing.T) {
	st, err := NewDiskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecord("k1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	keys, _ := st.RecordKeys()
	if len(keys) != 1 || keys[0] != "k1" {
		t.Fatalf("keys %v", keys)
	}
	p := Port{Proto: "tcp", Port: 80, HostIP: netip.MustParseAddr("fd00::1")}
	if ok, err := st.ReservePort("k1", p); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ps, _ := st.Ports()
	if ps[p] != "k1" {
		t.Fatalf("ports %v", ps)
	}
	_ = st.DeleteRecord("k1")
	_ = st.DeleteRecord("k1")
	if _, err := st.GetRecord("k1"); err == nil {
		t.Fatal("record survived delete")
	}
}
