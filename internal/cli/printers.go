package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/podnet/podnet/internal/api"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"
)

// objPrinter prints objects of one kind for `get`, in one -o format:
// the kind's table (wide or not), yaml, json, name, jsonpath=TEMPLATE or
// custom-columns=SPEC (and their -file forms). It is built before the
// store is contacted, so a bad template is refused up front.
type objPrinter struct {
	k      *api.Kind
	format string // "table", "yaml", "json", "name", "jsonpath", "custom-columns"
	wide   bool

	showNS, showLabels bool
	// events adds kubectl's EVENT column (--output-watch-events).
	events bool
	// prefixNames shows NAME as kind/name (a get of several kinds).
	prefixNames bool

	jp      *jsonpath.JSONPath
	columns []customColumn

	headerDone bool
	widths     []int // of the table's columns so far
}

// customColumn is one column of -o custom-columns: a header and the
// JSONPath of its cells.
type customColumn struct {
	Header string
	Path   string // a JSONPath template: {.metadata.name}
	jp     *jsonpath.JSONPath
}

func newObjPrinter(k *api.Kind, output string) (*objPrinter, error) {
	p := &objPrinter{k: k}
	name, arg, hasArg := strings.Cut(output, "=")
	switch {
	case output == "" || output == "wide":
		p.format, p.wide = "table", output == "wide"
	case output == "yaml" || output == "json" || output == "name":
		p.format = output
	case name == "jsonpath" || name == "jsonpath-file":
		if !hasArg {
			return nil, fmt.Errorf("-o %s: a template is required, e.g. -o jsonpath='{.items[*].metadata.name}'", name)
		}
		tmpl := arg
		if name == "jsonpath-file" {
			b, err := os.ReadFile(arg)
			if err != nil {
				return nil, fmt.Errorf("-o jsonpath-file: %w", err)
			}
			tmpl = string(b)
		}
		jp := jsonpath.New("output").AllowMissingKeys(true)
		if err := jp.Parse(tmpl); err != nil {
			return nil, fmt.Errorf("error parsing jsonpath %s: %w", tmpl, err)
		}
		p.format, p.jp = "jsonpath", jp
	case name == "custom-columns" || name == "custom-columns-file":
		if !hasArg {
			return nil, fmt.Errorf("-o %s: a spec is required, e.g. -o custom-columns=NAME:.metadata.name,IP:.status.podIP", name)
		}
		var cols []customColumn
		var err error
		if name == "custom-columns-file" {
			cols, err = customColumnsFile(arg)
		} else {
			cols, err = parseCustomColumns(arg)
		}
		if err != nil {
			return nil, err
		}
		p.format, p.columns = "custom-columns", cols
	default:
		return nil, fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: custom-columns, custom-columns-file, json, jsonpath, jsonpath-file, name, wide, yaml", output)
	}
	return p, nil
}

// parseCustomColumns reads `HEADER:PATH[,HEADER:PATH...]`. A PATH is a
// JSONPath with or without braces and leading dot (`.metadata.name`,
// `metadata.name`, `{.metadata.name}`); commas inside its brackets,
// braces, parentheses or quotes do not split columns.
func parseCustomColumns(spec string) ([]customColumn, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("custom-columns format specified but no custom columns given")
	}
	var cols []customColumn
	for _, part := range splitColumns(spec) {
		header, path, ok := strings.Cut(part, ":")
		if !ok || header == "" {
			return nil, fmt.Errorf("unexpected custom-columns spec: %s, expected <header>:<json-path-expr>", part)
		}
		tmpl, err := relaxedJSONPath(path)
		if err != nil {
			return nil, fmt.Errorf("custom-columns %q: %w", part, err)
		}
		jp := jsonpath.New(header).AllowMissingKeys(true)
		if err := jp.Parse(tmpl); err != nil {
			return nil, fmt.Errorf("custom-columns %q: error parsing jsonpath %s: %w", part, tmpl, err)
		}
		cols = append(cols, customColumn{Header: header, Path: tmpl, jp: jp})
	}
	return cols, nil
}

// splitColumns splits a custom-columns spec at the commas that are not
// inside brackets, braces, parentheses or quotes.
func splitColumns(spec string) []string {
	var parts []string
	depth, start := 0, 0
	var quote rune
	for i, r := range spec {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '[' || r == '{' || r == '(':
			depth++
		case (r == ']' || r == '}' || r == ')') && depth > 0:
			depth--
		case r == ',' && depth == 0:
			parts = append(parts, spec[start:i])
			start = i + 1
		}
	}
	return append(parts, spec[start:])
}

// relaxedJSONPath turns a custom-columns path into a JSONPath template:
// `metadata.name`, `.metadata.name` and `{.metadata.name}` all become
// `{.metadata.name}`.
func relaxedJSONPath(path string) (string, error) {
	p := strings.TrimSpace(path)
	if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
		p = p[1 : len(p)-1]
	}
	p = strings.TrimPrefix(p, ".")
	if p == "" || strings.ContainsAny(p, "{}") {
		return "", fmt.Errorf("unexpected path %q, expected a 'name1.name2' or '.name1.name2' or '{name1.name2}' or '{.name1.name2}'", path)
	}
	return "{." + p + "}", nil
}

// customColumnsFile reads -o custom-columns-file: a line of headers and a
// line of paths, in columns separated by blanks.
func customColumnsFile(path string) ([]customColumn, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-o custom-columns-file: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		return nil, fmt.Errorf("-o custom-columns-file %s: want 2 lines (headers, then paths), found %d", path, len(lines))
	}
	headers, paths := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(headers) != len(paths) {
		return nil, fmt.Errorf("-o custom-columns-file %s: %d headers but %d paths", path, len(headers), len(paths))
	}
	specs := make([]string, len(headers))
	for i := range headers {
		specs[i] = headers[i] + ":" + paths[i]
	}
	return parseCustomColumns(strings.Join(specs, ","))
}

// toGeneric turns a typed object (or list) into the generic JSON form
// JSONPath reads, as kubectl's unstructured objects: whole numbers are
// int64, others float64.
func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	if err := d.Decode(&out); err != nil {
		return nil, err
	}
	return numbers(out), nil
}

func numbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	case json.Number:
		if n, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return n
		}
		f, _ := t.Float64()
		return f
	}
	return v
}

// listOf is the List `get` prints for objs, each in its printable form
// (api.Printable: a Secret's values redacted).
func listOf(objs []api.Object) map[string]any {
	items := make([]any, len(objs))
	for i, o := range objs {
		items[i] = api.Printable(o)
	}
	return map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{"resourceVersion": ""}}
}

// print prints objects: as a list unless single (one object asked for by
// name). eventTypes, if set, are the watch events of the objects.
func (p *objPrinter) print(w io.Writer, objs []api.Object, single bool, eventTypes []string) error {
	for _, o := range objs {
		api.SetTypeMeta(o)
	}
	switch p.format {
	case "yaml", "json":
		var v any = listOf(objs)
		if single && len(objs) == 1 {
			v = api.Printable(objs[0])
		}
		if p.format == "json" {
			b, err := json.MarshalIndent(v, "", "    ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		if eventTypes != nil {
			b = append([]byte("---\n"), b...)
		}
		_, err = w.Write(b)
		return err
	case "name":
		for _, o := range objs {
			if _, err := fmt.Fprintln(w, objectName(o)); err != nil {
				return err
			}
		}
		return nil
	case "jsonpath":
		var v any = listOf(objs)
		if single && len(objs) == 1 {
			v = api.Printable(objs[0])
		}
		g, err := toGeneric(v)
		if err != nil {
			return err
		}
		if err := p.jp.Execute(w, g); err != nil {
			return fmt.Errorf("error executing jsonpath: %w", err)
		}
		return nil
	case "custom-columns":
		return p.printCustom(w, objs)
	}
	p.printTable(w, objs, eventTypes)
	return nil
}

// printEach prints watched objects: tables as one block of rows, the
// other formats one object (one document) at a time.
func (p *objPrinter) printEach(w io.Writer, objs []api.Object, eventTypes []string) error {
	if p.format == "table" || p.format == "custom-columns" {
		return p.print(w, objs, false, eventTypes)
	}
	for i, o := range objs {
		if err := p.print(w, []api.Object{o}, true, eventTypes[i:i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (p *objPrinter) printCustom(w io.Writer, objs []api.Object) error {
	var rows [][]string
	if !p.headerDone {
		hdr := make([]string, len(p.columns))
		for i, c := range p.columns {
			hdr[i] = c.Header
		}
		rows = append(rows, hdr)
		p.headerDone = true
	}
	for _, o := range objs {
		g, err := toGeneric(api.Printable(o))
		if err != nil {
			return err
		}
		row := make([]string, len(p.columns))
		for i, c := range p.columns {
			res, err := c.jp.FindResults(g)
			if err != nil {
				return fmt.Errorf("custom-columns %s: %w", c.Header, err)
			}
			var vals []string
			for _, set := range res {
				for _, v := range set {
					vals = append(vals, fmt.Sprintf("%v", v.Interface()))
				}
			}
			row[i] = api.None
			if len(vals) > 0 {
				row[i] = strings.Join(vals, ",")
			}
		}
		rows = append(rows, row)
	}
	p.widths = writeAligned(w, rows, p.widths)
	return nil
}

// printTable prints objects by their kind's columns (api.Kind.Columns):
// no per-kind code here. The header is printed once per printer, and
// column widths only grow, so the rows of a watch stay under the header.
func (p *objPrinter) printTable(w io.Writer, objs []api.Object, eventTypes []string) {
	var rows [][]string
	if !p.headerDone {
		var hdr []string
		if p.events {
			hdr = append(hdr, "EVENT")
		}
		if p.showNS {
			hdr = append(hdr, "NAMESPACE")
		}
		for _, c := range p.k.Columns {
			if !c.Wide || p.wide {
				hdr = append(hdr, c.Name)
			}
		}
		if p.showLabels {
			hdr = append(hdr, "LABELS")
		}
		rows = append(rows, hdr)
		p.headerDone = true
	}
	for i, o := range objs {
		var row []string
		if p.events {
			ev := ""
			if i < len(eventTypes) {
				ev = eventTypes[i]
			}
			row = append(row, ev)
		}
		if p.showNS {
			row = append(row, o.GetNamespace())
		}
		for _, c := range p.k.Columns {
			switch {
			case c.Wide && !p.wide:
			case p.prefixNames && c.Name == "NAME":
				row = append(row, kindName(p.k)+"/"+c.Cell(o))
			default:
				row = append(row, c.Cell(o))
			}
		}
		if p.showLabels {
			row = append(row, api.SelectorString(o.GetLabels()))
		}
		rows = append(rows, row)
	}
	p.widths = writeAligned(w, rows, p.widths)
}

// writeAligned writes rows of cells in columns three spaces apart (the
// last cell unpadded), each column as wide as its widest cell here or in
// widths (from earlier rows), and returns the widths used.
func writeAligned(w io.Writer, rows [][]string, widths []int) []int {
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				break
			}
			for len(widths) <= i {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+3))
			}
		}
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
	return widths
}
