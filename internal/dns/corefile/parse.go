package corefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ServerBlock is one `keys { directives }` block of a Corefile.
type ServerBlock struct {
	// Keys are the block's keys as written, commas removed, e.g.
	// "example.org:1053" or "dns://.:53".
	Keys []Token
	// Directives in the order written.
	Directives []Directive
}

// Directive is one directive occurrence: its name and every token that
// belongs to it, the name first, through the end of its block if it has
// one.
type Directive struct {
	Name   string
	Tokens []Token
}

// maxImportDepth bounds nested imports, which also stops import cycles.
const maxImportDepth = 10

// Options tune Parse; the zero value reads files from disk and the
// process environment.
type Options struct {
	// Getenv replaces os.Getenv for {$NAME}.
	Getenv func(string) string
	// ReadFile replaces os.ReadFile for `import FILE`.
	ReadFile func(string) ([]byte, error)
	// Glob replaces filepath.Glob for `import PATTERN`.
	Glob func(string) ([]string, error)
}

// Parse parses the Corefile src, named file in errors.
func Parse(file string, src []byte, o Options) ([]ServerBlock, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Glob == nil {
		o.Glob = filepath.Glob
	}
	p := &parser{o: o, snippets: map[string][]Token{}}
	toks, err := lex(file, src, o.Getenv, p.newSrc())
	if err != nil {
		return nil, err
	}
	toks, err = p.expand(toks, 0)
	if err != nil {
		return nil, err
	}
	return parseBlocks(toks)
}

type parser struct {
	o        Options
	snippets map[string][]Token
	srcs     int
}

func (p *parser) newSrc() int { p.srcs++; return p.srcs }

func snippetName(t Token) (string, bool) {
	if t.Quoted || len(t.Text) < 3 || t.Text[0] != '(' || t.Text[len(t.Text)-1] != ')' {
		return "", false
	}
	return t.Text[1 : len(t.Text)-1], true
}

// lineEnd returns the index just past the tokens on toks[i]'s line.
func lineEnd(toks []Token, i int) int {
	j := i + 1
	for j < len(toks) && SameLine(toks[j-1], toks[j]) {
		j++
	}
	return j
}

// matching returns the index of the '}' that closes the '{' at toks[i].
func matching(toks []Token, i int) int {
	nest := 0
	for j := i; j < len(toks); j++ {
		switch {
		case toks[j].IsOpen():
			nest++
		case toks[j].IsClose():
			nest--
			if nest == 0 {
				return j
			}
		}
	}
	return -1
}

// expand records snippet definitions (top level only) and replaces every
// `import X` line by the snippet X or the files X names.
func (p *parser) expand(toks []Token, depth int) ([]Token, error) {
	var out []Token
	nest := 0
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		lineStart := i == 0 || !SameLine(toks[i-1], t)
		if name, ok := snippetName(t); ok && lineStart && nest == 0 {
			if i+1 >= len(toks) || !toks[i+1].IsOpen() || !SameLine(t, toks[i+1]) {
				return nil, Errorf(t, "snippet %s: expected '{' after the snippet name", t.Text)
			}
			end := matching(toks, i+1)
			if end < 0 {
				return nil, Errorf(t, "snippet %s: missing '}'", t.Text)
			}
			if _, dup := p.snippets[name]; dup {
				return nil, Errorf(t, "redeclaration of previously declared snippet %s", name)
			}
			body := make([]Token, end-(i+2))
			copy(body, toks[i+2:end])
			for k := range body {
				body[k].Snippet = name
			}
			p.snippets[name] = body
			i = end
			continue
		}
		if lineStart && !t.Quoted && t.Text == "import" {
			end := lineEnd(toks, i)
			args := toks[i+1 : end]
			if len(args) != 1 {
				return nil, Errorf(t, "import takes exactly one argument (a snippet name or a file pattern), got %d", len(args))
			}
			if depth >= maxImportDepth {
				return nil, Errorf(t, "import %s: imports nested deeper than %d (an import cycle?)", args[0].Text, maxImportDepth)
			}
			pasted, err := p.importTokens(args[0], depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, pasted...)
			i = end - 1
			continue
		}
		if t.IsOpen() {
			nest++
		} else if t.IsClose() {
			nest--
		}
		out = append(out, t)
	}
	return out, nil
}

// importTokens returns the expanded tokens of snippet or files arg names.
func (p *parser) importTokens(arg Token, depth int) ([]Token, error) {
	if body, ok := p.snippets[arg.Text]; ok {
		id := p.newSrc()
		cp := make([]Token, len(body))
		for k, t := range body {
			t.src = id
			cp[k] = t
		}
		return p.expand(cp, depth)
	}
	pattern := arg.Text
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(arg.File), pattern)
	}
	var files []string
	if strings.ContainsAny(arg.Text, "*?[") {
		m, err := p.o.Glob(pattern)
		if err != nil {
			return nil, Errorf(arg, "import %s: bad pattern: %v", arg.Text, err)
		}
		files = m
	} else {
		files = []string{pattern}
	}
	var out []Token
	for _, f := range files {
		b, err := p.o.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				return nil, Errorf(arg, "import %s: no snippet of that name and no such file", arg.Text)
			}
			return nil, Errorf(arg, "import %s: %v", arg.Text, err)
		}
		toks, err := lex(f, b, p.o.Getenv, p.newSrc())
		if err != nil {
			return nil, err
		}
		toks, err = p.expand(toks, depth)
		if err != nil {
			return nil, err
		}
		out = append(out, toks...)
	}
	return out, nil
}

// parseBlocks groups expanded tokens into server blocks and directives.
func parseBlocks(toks []Token) ([]ServerBlock, error) {
	var blocks []ServerBlock
	i := 0
	for i < len(toks) {
		first := toks[i]
		var sb ServerBlock
		for i < len(toks) {
			t := toks[i]
			if t.IsOpen() || t.IsClose() {
				break
			}
			for _, k := range strings.Split(t.Text, ",") {
				if k = strings.TrimSpace(k); k != "" {
					kt := t
					kt.Text = k
					sb.Keys = append(sb.Keys, kt)
				}
			}
			i++
			if i < len(toks) && !SameLine(t, toks[i]) && !strings.HasSuffix(t.Text, ",") {
				break
			}
		}
		if len(sb.Keys) == 0 {
			return nil, Errorf(first, "unexpected '%s': expected a server block key such as '.:53'", first.Text)
		}
		var body []Token
		if i < len(toks) && toks[i].IsOpen() && SameLine(toks[i-1], toks[i]) {
			end := matching(toks, i)
			if end < 0 {
				return nil, Errorf(toks[i], "missing '}' for the block opened here")
			}
			body = toks[i+1 : end]
			i = end + 1
		} else {
			if len(blocks) > 0 || i < len(toks) && toks[i].IsOpen() {
				return nil, Errorf(first, "expected '{' on the line of the server block keys %s", keysText(sb.Keys))
			}
			// One block without braces: the rest of the file is its body.
			body = toks[i:]
			i = len(toks)
		}
		ds, err := splitDirectives(body)
		if err != nil {
			return nil, err
		}
		sb.Directives = ds
		blocks = append(blocks, sb)
	}
	return blocks, nil
}

func keysText(keys []Token) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.Text
	}
	return strings.Join(s, " ")
}

func splitDirectives(body []Token) ([]Directive, error) {
	var ds []Directive
	j := 0
	for j < len(body) {
		t := body[j]
		if t.IsOpen() || t.IsClose() {
			return nil, Errorf(t, "unexpected '%s': expected a directive", t.Text)
		}
		d := Directive{Name: t.Text, Tokens: []Token{t}}
		j++
		nest := 0
		for j < len(body) && (nest > 0 || SameLine(body[j-1], body[j])) {
			u := body[j]
			if u.IsOpen() {
				nest++
			} else if u.IsClose() {
				if nest == 0 {
					return nil, Errorf(u, "unexpected '}'")
				}
				nest--
			}
			d.Tokens = append(d.Tokens, u)
			j++
		}
		if nest > 0 {
			return nil, Errorf(t, "%s: missing '}'", d.Name)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// Key is a parsed server block key.
type Key struct {
	// Transport is "dns" (the default), or "tls", "grpc", "https", "quic".
	Transport string
	// Zone is the fully qualified, lower-cased zone, e.g. "example.org.".
	// A CIDR key (10.0.0.0/8) yields its reverse zone.
	Zone string
	// Port is "" when the key gives none.
	Port string
}

func (k Key) String() string {
	p := k.Port
	if p == "" {
		p = "53"
	}
	return fmt.Sprintf("%s://%s:%s", k.Transport, k.Zone, p)
}
