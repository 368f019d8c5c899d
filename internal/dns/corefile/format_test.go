package corefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shape prints blocks without places: keys, then each directive's words
// with "/" where a new source line starts and braces marked when they
// are syntax, so two parses compare as the same configuration.
func shape(bs []ServerBlock) string {
	var b strings.Builder
	for _, sb := range bs {
		for _, k := range sb.Keys {
			b.WriteString(k.Text + ",")
		}
		b.WriteString(" {\n")
		for _, d := range sb.Directives {
			for i, t := range d.Tokens {
				if i > 0 && !SameLine(d.Tokens[i-1], t) {
					b.WriteString(" /")
				}
				switch {
				case t.IsOpen():
					b.WriteString(" <{>")
				case t.IsClose():
					b.WriteString(" <}>")
				default:
					b.WriteString(" " + strconvQuote(t.Text))
				}
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func strconvQuote(s string) string { return "«" + s + "»" }

// roundTrip checks that Format's output parses back to the same blocks.
func roundTrip(t *testing.T, name string, bs []ServerBlock) {
	t.Helper()
	out := Format(bs)
	again, err := Parse("formatted", out, Options{Getenv: func(k string) string { return "{$" + k + "}" }})
	if err != nil {
		t.Fatalf("%s: formatted output does not parse: %v\n%s", name, err, out)
	}
	if a, b := shape(bs), shape(again); a != b {
		t.Fatalf("%s: round trip changed the blocks:\n%s\nformatted:\n%s\nreparsed:\n%s", name, a, out, b)
	}
}

// TestFormatRoundTrip formats every golden Corefile that parses.
func TestFormatRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in, _, _ := strings.Cut(string(b), separator)
		bs, err := Parse(f, []byte(in), Options{})
		if err != nil {
			continue
		}
		roundTrip(t, f, bs)
	}
}

func TestFormat(t *testing.T) {
	src := "(common) {\n  errors\n}\n" +
		"a.example:53, b.example {\n  import common\n  template IN A {\n    answer \"{{ .Name }} 60 IN A 192.0.2.1\"\n  }\n" +
		"  rewrite name regex \"(.*) x\" {1}.y # comment {\n  hosts { # }\n    192.0.2.9 h\n  }\n}\n"
	bs, err := Parse("Corefile", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "a.example:53 b.example {\n" +
		"    errors\n" +
		"    template IN A {\n        answer \"{{ .Name }} 60 IN A 192.0.2.1\"\n    }\n" +
		"    rewrite name regex \"(.*) x\" {1}.y\n" +
		"    hosts {\n        192.0.2.9 h\n    }\n}\n"
	if got := string(Format(bs)); got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	roundTrip(t, "TestFormat", bs)
	quoted := []ServerBlock{{Keys: []Token{{Text: "."}}, Directives: []Directive{{Name: "x", Tokens: []Token{
		{Text: "x", Line: 1}, {Text: "{", Quoted: true, Line: 1}, {Text: "", Quoted: true, Line: 1},
		{Text: `a "b\`, Line: 1}, {Text: "#c", Line: 1},
	}}}}}
	if got := string(Format(quoted)); got != ". {\n    x \"{\" \"\" \"a \\\"b\\\\\" \"#c\"\n}\n" {
		t.Errorf("quoting: %q", got)
	}
	roundTrip(t, "quoted", quoted)
}
