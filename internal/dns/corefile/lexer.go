// Package corefile parses the Corefile language CoreDNS reads: server
// blocks introduced by one or more keys (`.:53`, `example.org:1053`,
// `dns://.:1053`), each holding directives with arguments and nested
// blocks; snippets `(name) { ... }` pasted by `import name`; `import` of
// other files (globs allowed, relative to the importing file); `{$ENV}`
// substitution inside tokens; `#` comments and double-quoted strings.
//
// The parser knows nothing about plugins: it returns server blocks whose
// directives are token lists, and errors that name the file and line in
// CoreDNS's form, `Corefile:4 - Error during parsing: ...`.
package corefile

import (
	"fmt"
	"os"
	"strings"
	"unicode"
)

// Token is one word of a Corefile with where it came from.
type Token struct {
	File string
	Line int
	Text string
	// Quoted is set when the word was written in double quotes; a quoted
	// "{" or "}" is an argument, not a brace.
	Quoted bool
	// Snippet is the name of the snippet the token was pasted from, if any.
	Snippet string

	// src tells apart two tokens with the same file and line that came
	// from different pastes: tokens are on one line only if src matches.
	src int
}

// SameLine reports whether a and b were written on one line of one source.
func SameLine(a, b Token) bool { return a.src == b.src && a.File == b.File && a.Line == b.Line }

// IsOpen reports whether t opens a block.
func (t Token) IsOpen() bool { return !t.Quoted && t.Text == "{" }

// IsClose reports whether t closes a block.
func (t Token) IsClose() bool { return !t.Quoted && t.Text == "}" }

// Error is a parse or setup error at a place in a Corefile.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d - Error during parsing: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s - Error during parsing: %s", e.File, e.Msg)
}

// Errorf returns an *Error located at t.
func Errorf(t Token, format string, args ...any) error {
	return &Error{File: t.File, Line: t.Line, Msg: fmt.Sprintf(format, args...)}
}

// Lex splits src into tokens. Words are separated by white space; a word
// starting with '#' starts a comment to the end of the line; "..." is one
// word (backslash escapes a quote or backslash inside it). {$NAME} inside a
// word is replaced by the environment variable NAME (empty if unset);
// getenv nil means os.Getenv.
func Lex(file string, src []byte, getenv func(string) string) ([]Token, error) {
	return lex(file, src, getenv, 0)
}

func lex(file string, src []byte, getenv func(string) string, id int) ([]Token, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var toks []Token
	line := 1
	s := string(src)
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"':
			start := line
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				ch := s[i]
				if ch == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if ch == '"' {
					i++
					closed = true
					break
				}
				if ch == '\n' {
					line++
				}
				b.WriteByte(ch)
				i++
			}
			if !closed {
				return nil, &Error{File: file, Line: start, Msg: "unterminated quoted string"}
			}
			toks = append(toks, Token{File: file, Line: start, Text: expandEnv(b.String(), getenv), Quoted: true, src: id})
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) {
				j++
			}
			word := s[i:j]
			i = j
			toks = append(toks, Token{File: file, Line: line, Text: expandEnv(word, getenv), src: id})
		}
	}
	return toks, nil
}

func isSpace(c byte) bool { return c < 0x80 && unicode.IsSpace(rune(c)) }

// expandEnv replaces every {$NAME} in w.
func expandEnv(w string, getenv func(string) string) string {
	if !strings.Contains(w, "{$") {
		return w
	}
	var b strings.Builder
	for {
		k := strings.Index(w, "{$")
		if k < 0 {
			b.WriteString(w)
			return b.String()
		}
		end := strings.IndexByte(w[k:], '}')
		if end < 0 {
			b.WriteString(w)
			return b.String()
		}
		b.WriteString(w[:k])
		b.WriteString(getenv(w[k+2 : k+end]))
		w = w[k+end+1:]
	}
}
