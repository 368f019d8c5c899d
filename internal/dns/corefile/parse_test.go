package corefile

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// render prints blocks compactly: keys | directive(args...) ...
func render(bs []ServerBlock) string {
	var b strings.Builder
	for _, sb := range bs {
		for i, k := range sb.Keys {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(k.Text)
		}
		b.WriteString(" {")
		for _, d := range sb.Directives {
			b.WriteString(" [")
			for i, t := range d.Tokens {
				if i > 0 {
					b.WriteString(" ")
				}
				fmt.Fprintf(&b, "%s@%s:%d", t.Text, t.File, t.Line)
			}
			b.WriteString("]")
		}
		b.WriteString(" }\n")
	}
	return b.String()
}

var files = map[string]string{
	"dir/extra.conf": "example.net {\n  whoami\n}\n",
	"dir/a.snip":     "log\n",
	"dir/b.snip":     "errors\n",
	"dir/loop":       "import loop\n",
}

func testOpts() Options {
	return Options{
		Getenv: func(k string) string {
			return map[string]string{"PORT": "1053", "UP": "127.0.0.1 127.0.0.2"}[k]
		},
		ReadFile: func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, fs.ErrNotExist
		},
		Glob: func(p string) ([]string, error) {
			if p == "dir/*.snip" {
				return []string{"dir/a.snip", "dir/b.snip"}, nil
			}
			return nil, nil
		},
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"one block", ".:53 {\n  whoami\n}\n", ".:53 { [whoami@dir/Corefile:2] }\n"},
		{"no braces", "example.org\nwhoami\nlog\n", "example.org { [whoami@dir/Corefile:2] [log@dir/Corefile:3] }\n"},
		{"several keys", "example.org:1053 dns://example.net:1053, 10.0.0.0/8 {\n whoami\n}\n",
			"example.org:1053,dns://example.net:1053,10.0.0.0/8 { [whoami@dir/Corefile:2] }\n"},
		{"keys over lines", "a.org,\n b.org {\n whoami\n}\n", "a.org,b.org { [whoami@dir/Corefile:3] }\n"},
		{"several blocks, comments", "# top\n.:53 { # here\n  log # trailing\n}\n\nexample.org {\n  errors\n}\n",
			".:53 { [log@dir/Corefile:3] }\nexample.org { [errors@dir/Corefile:7] }\n"},
		{"nested block", ". {\n  forward . 1.1.1.1 {\n    max_fails 3\n  }\n  cache\n}\n",
			". { [forward@dir/Corefile:2 .@dir/Corefile:2 1.1.1.1@dir/Corefile:2 {@dir/Corefile:2 max_fails@dir/Corefile:3 3@dir/Corefile:3 }@dir/Corefile:4] [cache@dir/Corefile:5] }\n"},
		{"quotes", ". {\n  template \"a b\" \"{\" \"say \\\"hi\\\"\"\n}\n",
			". { [template@dir/Corefile:2 a b@dir/Corefile:2 {@dir/Corefile:2 say \"hi\"@dir/Corefile:2] }\n"},
		{"env", ".:{$PORT} {\n  forward . {$UP} {$NOPE}x\n}\n",
			".:1053 { [forward@dir/Corefile:2 .@dir/Corefile:2 127.0.0.1 127.0.0.2@dir/Corefile:2 x@dir/Corefile:2] }\n"},
		{"snippet", "(common) {\n  errors\n  log\n}\n. {\n  import common\n  whoami\n}\n",
			". { [errors@dir/Corefile:2] [log@dir/Corefile:3] [whoami@dir/Corefile:7] }\n"},
		{"snippet twice, same lines", "(s) {\n  log\n}\na {\n  import s\n  import s\n}\n",
			"a { [log@dir/Corefile:2] [log@dir/Corefile:2] }\n"},
		{"snippet in snippet", "(a) {\n  log\n}\n(b) {\n  import a\n  errors\n}\nx {\n  import b\n}\n",
			"x { [log@dir/Corefile:2] [errors@dir/Corefile:6] }\n"},
		{"import file", ". {\n whoami\n}\nimport extra.conf\n", ". { [whoami@dir/Corefile:2] }\nexample.net { [whoami@dir/extra.conf:2] }\n"},
		{"import glob", ". {\n import *.snip\n}\n", ". { [log@dir/a.snip:1] [errors@dir/b.snip:1] }\n"},
		{"import glob none", ". {\n import *.none\n log\n}\n", ". { [log@dir/Corefile:3] }\n"},
		{"empty block", ". {\n}\n", ". { }\n"},
		{"crlf", ".:53 {\r\n  log\r\n}\r\n", ".:53 { [log@dir/Corefile:2] }\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, err := Parse("dir/Corefile", []byte(tt.in), testOpts())
			if err != nil {
				t.Fatal(err)
			}
			if got := render(bs); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unclosed block", ". {\n  log\n", "dir/Corefile:1 - Error during parsing: missing '}' for the block opened here"},
		{"stray close", ". {\n}\n}\n", "dir/Corefile:3 - Error during parsing: unexpected '}': expected a server block key such as '.:53'"},
		{"brace on next line", ". {\n  forward . 1.1.1.1\n  {\n  }\n}\n", "dir/Corefile:3 - Error during parsing: unexpected '{': expected a directive"},
		{"unterminated quote", ". {\n  log \"abc\n}\n", "dir/Corefile:2 - Error during parsing: unterminated quoted string"},
		{"second block without braces", "a {\n}\nb\nlog\n", "dir/Corefile:3 - Error during parsing: expected '{' on the line of the server block keys b"},
		{"unknown import", ". {\n  import nothing\n}\n", "dir/Corefile:2 - Error during parsing: import nothing: no snippet of that name and no such file"},
		{"import args", ". {\n  import a b\n}\n", "dir/Corefile:2 - Error during parsing: import takes exactly one argument (a snippet name or a file pattern), got 2"},
		{"import loop", "import loop\n", "dir/loop:1 - Error during parsing: import loop: imports nested deeper than 10 (an import cycle?)"},
		{"self snippet", "(s) {\n  import s\n}\n. {\n import s\n}\n", "dir/Corefile:2 - Error during parsing: import s: imports nested deeper than 10 (an import cycle?)"},
		{"duplicate snippet", "(s) {\n}\n(s) {\n}\n", "dir/Corefile:3 - Error during parsing: redeclaration of previously declared snippet s"},
		{"snippet no brace", "(s)\n", "dir/Corefile:1 - Error during parsing: snippet (s): expected '{' after the snippet name"},
		{"only brace", "{\n}\n", "dir/Corefile:1 - Error during parsing: unexpected '{': expected a server block key such as '.:53'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("dir/Corefile", []byte(tt.in), testOpts())
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n %s\nwant\n %s", err, tt.want)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{".", "dns://.:53", ""},
		{".:1053", "dns://.:1053", ""},
		{"dns://Example.ORG:1053", "dns://example.org.:1053", ""},
		{"example.org.", "dns://example.org.:53", ""},
		{"10.0.0.0/8", "dns://10.in-addr.arpa.:53", ""},
		{"192.168.1.0/24:1053", "dns://1.168.192.in-addr.arpa.:1053", ""},
		{"dns://[fd00::/8]:53", "dns://d.f.ip6.arpa.:53", ""},
		{"tls://.:853", "tls://.:853", ""},
		{"foo://.", "", `unknown transport "foo" in server block key "foo://."`},
		{".:99999", "", `server block key ".:99999": port "99999" is not a number from 0 to 65535`},
		{"10.0.0.0/7", "", `server block key "10.0.0.0/7": CIDR "10.0.0.0/7": only /0, /8, /16, /24, /32 map to a reverse zone`},
		{":53", "", `server block key ":53": empty zone`},
		{"a..b", "", `server block key "a..b": "a..b" is not a valid domain name`},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseKey(%q) error = %v, want %s", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || k.String() != tt.want {
			t.Errorf("ParseKey(%q) = %s, %v; want %s", tt.in, k, err, tt.want)
		}
	}
}

// FuzzParse: any input parses or fails with an *Error carrying a line,
// and never panics or hangs; what parses is printed back by Format to
// the same blocks.
func FuzzParse(f *testing.F) {
	for _, s := range []string{".:53 {\n log\n}\n", "(s) {\n log\n}\n. {\n import s\n}\n", "a, b {\n x {\n y\n }\n}\n", "\"{\" {\n}\n", "{$X}", "import loop"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bs, err := Parse("Corefile", []byte(s), testOpts())
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		keysOK := true
		for _, b := range bs {
			for _, k := range b.Keys {
				if _, err := ParseKey(k.Text); err != nil {
					keysOK = false // never loads; a multi-line quoted key cannot be printed back
				}
			}
		}
		if keysOK {
			roundTrip(t, "fuzz", bs)
		}
		for _, b := range bs {
			if len(b.Keys) == 0 {
				t.Fatalf("block without keys from %q", s)
			}
			for _, k := range b.Keys {
				ParseKey(k.Text)
			}
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{".", "dns://example.org:53", "10.0.0.0/8", "[::1]:53", "fd00::/8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err == nil && (k.Zone == "" || k.Zone[len(k.Zone)-1] != '.') {
			t.Fatalf("ParseKey(%q) zone %q not qualified", s, k.Zone)
		}
	})
}
