package dnstest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	pdns "github.com/podnet/podnet/internal/dns"
)

// recorder is a testing.TB that keeps the failures it is told of.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// args parses a directive's arguments, failing on "bad".
func args(c *pdns.Controller) ([]string, error) {
	c.Next()
	a := c.RemainingArgs()
	for _, s := range a {
		if s == "bad" {
			return nil, errors.New("Testfile:1 - bad argument")
		}
	}
	return a, nil
}

func TestRunParse(t *testing.T) {
	r := &recorder{TB: t}
	RunParse(r, args, []ParseCase[[]string]{
		{In: "x a b", Want: func(a []string) bool { return len(a) == 2 }}, // passes
		{In: "x bad", Err: "bad argument"},                                // passes
		{In: "x a"},                                                       // passes: no Want
		{In: "x a", Want: func(a []string) bool { return len(a) == 2 }},   // wrong result
		{In: "x a", Err: "bad"},                                           // no error
		{In: "x bad", Err: "other"},                                       // wrong error
		{In: "x bad", Want: func([]string) bool { return true }},          // unwanted error
	})
	want := []string{`"x a": parsed [a]`, `"x a": error <nil>, want "bad"`, `"x bad": error Testfile:1 - bad argument, want "other"`, `"x bad": Testfile:1 - bad argument`}
	if strings.Join(r.errs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("failures:\n%s\nwant:\n%s", strings.Join(r.errs, "\n"), strings.Join(want, "\n"))
	}
}

func TestRunSetup(t *testing.T) {
	setup := func(c *pdns.Controller) error { _, err := args(c); return err }
	r := &recorder{TB: t}
	none := func(*pdns.Controller) string { return "" }
	RunSetup(r, setup, []SetupCase{
		{In: "x a", Want: none},                                            // passes
		{In: "x bad", Err: "Testfile:1 - bad argument"},                    // passes
		{In: "x bad", Err: "bad argument"},                                 // not the whole error
		{In: "x a", Err: "Testfile:1 - bad argument"},                      // no error
		{In: "x a", Want: func(*pdns.Controller) string { return "nope" }}, // check fails
	})
	want := []string{`"x bad": error Testfile:1 - bad argument, want "bad argument"`, `"x a": error <nil>, want "Testfile:1 - bad argument"`, `"x a": nope`}
	if strings.Join(r.errs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("failures:\n%s\nwant:\n%s", strings.Join(r.errs, "\n"), strings.Join(want, "\n"))
	}
}
