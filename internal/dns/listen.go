package dns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ListenTCP returns a listener on addr that survives reloads: while one
// Instance holds it, a new Instance asking for the same address gets a
// listener sharing the same socket, so health, ready and metrics keep
// answering across a reload. The socket closes when every listener handed
// out for it is closed.
func ListenTCP(addr string) (net.Listener, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s, ok := shared[addr]
	if !ok {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		s = &sharedListener{addr: addr, l: l, conns: make(chan net.Conn), done: make(chan struct{})}
		shared[addr] = s
		go s.accept()
	}
	s.refs++
	return &listenerRef{s: s, closed: make(chan struct{})}, nil
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*sharedListener{}
)

type sharedListener struct {
	addr  string
	l     net.Listener
	refs  int
	conns chan net.Conn
	done  chan struct{}
	err   error
}

func (s *sharedListener) accept() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			s.err = err
			close(s.done)
			return
		}
		select {
		case s.conns <- c:
		case <-s.done:
			c.Close()
			return
		}
	}
}

type listenerRef struct {
	s      *sharedListener
	once   sync.Once
	closed chan struct{}
}

func (r *listenerRef) Accept() (net.Conn, error) {
	select {
	case c := <-r.s.conns:
		return c, nil
	case <-r.closed:
		return nil, net.ErrClosed
	case <-r.s.done:
		if r.s.err != nil {
			return nil, r.s.err
		}
		return nil, net.ErrClosed
	}
}

func (r *listenerRef) Close() error {
	r.once.Do(func() {
		close(r.closed)
		sharedMu.Lock()
		defer sharedMu.Unlock()
		r.s.refs--
		if r.s.refs == 0 {
			delete(shared, r.s.addr)
			r.s.l.Close()
		}
	})
	return nil
}

func (r *listenerRef) Addr() net.Addr { return r.s.l.Addr() }

// ServeHTTP serves h on addr through a shared listener (ListenTCP) and
// returns the function that stops it. Plugins call it from OnStartup and
// the stop function from OnShutdown.
func ServeHTTP(addr string, h http.Handler) (stop func() error, err error) {
	l, err := ListenTCP(addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = srv.Shutdown(ctx)
			l.Close()
		})
		return err
	}, nil
}

// CheckHostPort validates an ADDRESS argument ("host:port", ":port").
func CheckHostPort(addr string) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return nil
}
