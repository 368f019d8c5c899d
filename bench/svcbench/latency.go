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

// connect is one TCP connect from the calling thread's namespace: the
// time from connect(2) until the socket is writable (SYN out, SYN-ACK
// in), closed with a reset so no TIME_WAIT piles up. Non-blocking plus
// poll(2), because a blocking connect returns EINTR when the Go runtime
// preempts the thread (SIGURG). If greet, it first reads the server's
// greeting (proof that the server, not something else, answered).
func connect(dst netip.AddrPort, greet bool) (time.Duration, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	t0 := time.Now()
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS {
		return 0, fmt.Errorf("connect %s: %w", dst, err)
	}
	if err == unix.EINPROGRESS {
		if err := waitFD(fd, unix.POLLOUT, t0.Add(2*time.Second)); err != nil {
			return 0, fmt.Errorf("connect %s: %w", dst, err)
		}
		if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = unix.Errno(soerr)
			}
			return 0, fmt.Errorf("connect %s: %w", dst, err)
		}
	}
	dt := time.Since(t0)
	if greet {
		if err := waitFD(fd, unix.POLLIN, time.Now().Add(2*time.Second)); err != nil {
			return 0, fmt.Errorf("read from %s: %w", dst, err)
		}
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

// waitFD polls fd for events until deadline, retrying on EINTR.
func waitFD(fd int, events int16, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timed out")
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
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
