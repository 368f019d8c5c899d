package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/netns"
	"golang.org/x/sys/unix"
)

// latency is what connects through a topology measured.
type latency struct {
	service []time.Duration // connect() through a target's ClusterIP
	direct  []time.Duration // connect() to a server address (no Service)
}

// connect is one blocking TCP connect from the calling thread's namespace:
// the time from connect(2) to its return (SYN out, SYN-ACK in), closed
// with a reset so no TIME_WAIT piles up. If greet, it first reads the
// server's greeting (proof that the server, not something else, answered).
func connect(dst netip.AddrPort, greet bool) (time.Duration, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	t0 := time.Now()
	err = unix.Connect(fd, sa)
	dt := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("connect %s: %w", dst, err)
	}
	if greet {
		buf := make([]byte, 16)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return 0, fmt.Errorf("read from %s: %w", dst, err)
		}
		if string(buf[:n]) != "pnb\n" {
			return 0, fmt.Errorf("%s answered %q, not the bench server's greeting", dst, buf[:n])
		}
	}
	return dt, nil
}

// measureLatency runs from the client namespace: first every target's
// ClusterIP must reach the server (with its greeting), then warm-up
// connects, then n connects through the targets' ClusterIPs (round robin)
// interleaved with n straight to the server's addresses.
func measureLatency(t *topo, targets []int, n int) (*latency, error) {
	l := &latency{}
	err := netns.Do(netns.Path(t.client), func() error {
		for _, i := range targets {
			dst := netip.AddrPortFrom(svcIP(i), uint16(svcPort))
			if _, err := connect(dst, true); err != nil {
				return fmt.Errorf("through the ClusterIP of %s: %w", svcName(i), err)
			}
		}
		for k := 0; k < 50; k++ {
			if _, err := connect(netip.AddrPortFrom(svcIP(targets[k%len(targets)]), uint16(svcPort)), false); err != nil {
				return err
			}
		}
		for k := 0; k < n; k++ {
			d, err := connect(netip.AddrPortFrom(svcIP(targets[k%len(targets)]), uint16(svcPort)), false)
			if err != nil {
				return err
			}
			l.service = append(l.service, d)
			d, err = connect(netip.AddrPortFrom(addAddr(serverIP, k%serverIPs), uint16(targetPort)), false)
			if err != nil {
				return err
			}
			l.direct = append(l.direct, d)
		}
		return nil
	})
	return l, err
}

// procMem reads VmRSS, RssAnon and VmHWM (KiB) of a process.
func procMem(pid int) (rss, anon, hwm int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.Atoi(fs[0])
		switch k {
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, anon, hwm, sc.Err()
}
