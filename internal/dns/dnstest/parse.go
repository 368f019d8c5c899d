package dnstest

import (
	"strings"
	"testing"

	pdns "github.com/podnet/podnet/internal/dns"
)

// ParseCase is a Corefile snippet for a plugin's parser and what must
// come of it.
type ParseCase[T any] struct {
	In string
	// Err, when set, is a part of the error parsing must fail with.
	Err string
	// Want checks what a parse without error gave (nil: anything).
	Want func(T) bool
}

// RunParse runs parse on a test controller (pdns.NewTestController) of
// each case's In and reports every case whose error or result is not
// what it wants; it goes on after a failed case.
func RunParse[T any](t testing.TB, parse func(*pdns.Controller) (T, error), cases []ParseCase[T]) {
	t.Helper()
	for _, tt := range cases {
		got, err := parse(pdns.NewTestController(tt.In))
		if tt.Err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.Err) {
				t.Errorf("%q: error %v, want %q", tt.In, err, tt.Err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.In, err)
			continue
		}
		if tt.Want != nil && !tt.Want(got) {
			t.Errorf("%q: parsed %+v", tt.In, got)
		}
	}
}

// SetupCase is a Corefile snippet for a plugin's setup function and what
// must come of it.
type SetupCase struct {
	In string
	// Err is the whole error setup must fail with ("": none).
	Err string
	// Want checks the controller after a setup without error (nil:
	// nothing more); it says what is wrong, "" for nothing.
	Want func(c *pdns.Controller) string
}

// RunSetup runs setup on a test controller (pdns.NewTestController) of
// each case's In and reports every case whose error is not exactly Err
// or whose Want finds fault; it goes on after a failed case.
func RunSetup(t testing.TB, setup func(*pdns.Controller) error, cases []SetupCase) {
	t.Helper()
	for _, tt := range cases {
		c := pdns.NewTestController(tt.In)
		err := setup(c)
		if (err == nil) != (tt.Err == "") || err != nil && err.Error() != tt.Err {
			t.Errorf("%q: error %v, want %q", tt.In, err, tt.Err)
			continue
		}
		if err == nil && tt.Want != nil {
			if msg := tt.Want(c); msg != "" {
				t.Errorf("%q: %s", tt.In, msg)
			}
		}
	}
}
