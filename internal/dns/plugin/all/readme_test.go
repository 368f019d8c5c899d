package all

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	pdns "github.com/podnet/podnet/internal/dns"
)

var corefileBlock = regexp.MustCompile("(?s)~~~ corefile\n(.*?)~~~")

// TestREADMEs loads every example Corefile of every plugin README, so the
// docs cannot drift from the parsers; every registered plugin must have
// a README with at least one example.
func TestREADMEs(t *testing.T) {
	for _, name := range pdns.Plugins() {
		if name == "testbig" {
			continue
		}
		path := filepath.Join("..", name, "README.md")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("plugin %s: %v", name, err)
			continue
		}
		ex := corefileBlock.FindAllSubmatch(b, -1)
		if len(ex) == 0 {
			t.Errorf("%s: no ~~~ corefile example", path)
		}
		for i, m := range ex {
			in := pdns.Input{File: path, Contents: m[1]}
			if _, err := pdns.Load(in, pdns.LoadOptions{Port: "53"}); err != nil {
				t.Errorf("%s example %d: %v\n%s", path, i+1, err, m[1])
			}
		}
	}
}
