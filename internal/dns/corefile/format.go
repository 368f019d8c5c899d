package corefile

import (
	"bytes"
	"strings"
)

// Format prints server blocks back as a Corefile: each block's keys on
// one line with its opening brace, its directives one source line per
// output line (tokens that were written on one line stay on one line),
// indented by nesting. Snippets and imports are already expanded in
// parsed blocks, so the result stands alone; words that need it are
// quoted, so Parse(Format(blocks)) gives the same blocks back (but for
// a key with a line break in it, which no server accepts).
func Format(blocks []ServerBlock) []byte {
	var b bytes.Buffer
	for i, sb := range blocks {
		if i > 0 {
			b.WriteByte('\n')
		}
		for j, k := range sb.Keys {
			if j > 0 {
				b.WriteByte(' ')
			}
			if _, snip := snippetName(k); snip || k.Text == "{" || k.Text == "}" || k.Text == "import" {
				k.Quoted = true // a key, never a brace, an import or a snippet
			}
			b.WriteString(quote(k))
		}
		b.WriteString(" {\n")
		for _, d := range sb.Directives {
			formatTokens(&b, d.Tokens)
		}
		b.WriteString("}\n")
	}
	return b.Bytes()
}

// formatTokens writes one directive, starting a line wherever the source
// did; depth is the brace nesting inside the server block.
func formatTokens(b *bytes.Buffer, toks []Token) {
	depth := 1
	for i, t := range toks {
		if i == 0 || !SameLine(toks[i-1], t) {
			if i > 0 {
				b.WriteByte('\n')
			}
			ind := depth
			if t.IsClose() {
				ind--
			}
			b.WriteString(strings.Repeat("    ", max(ind, 0)))
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(quote(t))
		switch {
		case t.IsOpen():
			depth++
		case t.IsClose():
			depth--
		}
	}
	b.WriteByte('\n')
}

// quote returns t as the lexer must read it back.
func quote(t Token) string {
	s := t.Text
	needs := t.Quoted || s == "" || strings.HasPrefix(s, "#")
	for i := 0; i < len(s) && !needs; i++ {
		needs = isSpace(s[i]) || s[i] == '"'
	}
	if !needs {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
