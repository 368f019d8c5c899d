package corefile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files' expected part")

const separator = "\n-----\n"

// TestGolden parses each testdata/*.txt: a Corefile, a line "-----", and
// the expected blocks (or error). Files imported live in testdata/import/.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(b), separator)
			if !ok && !*update {
				t.Fatalf("%s: no %q separator", f, strings.TrimSpace(separator))
			}
			o := Options{Getenv: func(k string) string {
				return map[string]string{"UPSTREAM": "127.0.0.1:5300", "ZONE": "example.org"}[k]
			}}
			bs, err := Parse(f, []byte(in), o)
			got := ""
			if err != nil {
				got = "error: " + err.Error() + "\n"
			} else {
				got = render(bs)
			}
			if *update {
				os.WriteFile(f, []byte(in+separator+got), 0o644)
				return
			}
			if got != want {
				t.Errorf("%s:\ngot\n%s\nwant\n%s", f, got, want)
			}
		})
	}
}
