package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Doc is one decoded manifest document.
type Doc struct {
	Source string // file name, or "-" for stdin
	Index  int    // 1-based position within Source
	Kind   *Kind
	Object Object
}

// Where names the document in errors: `pod.yaml (document 2)`.
func (d Doc) Where() string {
	if d.Index <= 1 {
		return d.Source
	}
	return fmt.Sprintf("%s (document %d)", d.Source, d.Index)
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type list struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// Decode reads every YAML or JSON document in r (separated by `---`, or a
// `kind: List`), decodes each strictly into its typed object, applies
// defaults and validates it. Namespaced objects without a namespace get
// namespace (DefaultNamespace if empty). It returns all documents or the
// first error, which names the source, the document and the field.
func Decode(source, namespace string, r io.Reader) ([]Doc, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Doc
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading document %d: %w", source, i, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			i--
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s (document %d): invalid YAML: %w", source, i, err)
		}
		var tm typeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			return nil, fmt.Errorf("%s (document %d): %w", source, i, err)
		}
		if tm.Kind == "List" {
			var l list
			if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &l); err != nil {
				return nil, fmt.Errorf("%s (document %d): List: %w", source, i, err)
			}
			for j, item := range l.Items {
				d, err := decodeOne(Doc{Source: fmt.Sprintf("%s (document %d, items[%d])", source, i, j)}, namespace, item)
				if err != nil {
					return nil, err
				}
				docs = append(docs, d)
			}
			continue
		}
		d, err := decodeOne(Doc{Source: source, Index: i}, namespace, js)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no objects found", source)
	}
	return docs, nil
}

// DecodeObject decodes a single JSON or YAML object strictly, without
// defaulting or validating (used for stored objects).
func DecodeObject(data []byte) (Object, *Kind, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, err
	}
	var tm typeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, nil, err
	}
	k, err := KindFor(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, nil, err
	}
	o := k.New()
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, o); err != nil {
		return nil, nil, err
	}
	return o, k, nil
}

func decodeOne(d Doc, namespace string, js []byte) (Doc, error) {
	var tm typeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return d, fmt.Errorf("%s: %w", d.Where(), err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		var missing []string
		if tm.APIVersion == "" {
			missing = append(missing, "apiVersion")
		}
		if tm.Kind == "" {
			missing = append(missing, "kind")
		}
		return d, fmt.Errorf("%s: %s not set", d.Where(), strings.Join(missing, " and "))
	}
	k, err := KindFor(tm.APIVersion, tm.Kind)
	if err != nil {
		return d, fmt.Errorf("%s: %w", d.Where(), err)
	}
	o := k.New()
	strict, err := kjson.UnmarshalStrict(js, o)
	if err != nil {
		return d, fmt.Errorf("%s: %s: %w", d.Where(), k.GVK.Kind, err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return d, fmt.Errorf("%s: %s %q: %s", d.Where(), k.GVK.Kind, o.GetName(), strings.Join(msgs, "; "))
	}
	d.Kind, d.Object = k, o
	if k.Namespaced && o.GetNamespace() == "" {
		o.SetNamespace(namespace)
	}
	if err := Prepare(o); err != nil {
		return d, fmt.Errorf("%s: %w", d.Where(), err)
	}
	return d, nil
}

// Prepare sets type information, applies defaults and validates o. The
// error names the kind, the object and every invalid field.
func Prepare(o Object) error {
	k, err := KindOf(o)
	if err != nil {
		return err
	}
	o.GetObjectKind().SetGroupVersionKind(k.GVK)
	if k.Namespaced && o.GetNamespace() == "" {
		o.SetNamespace(DefaultNamespace)
	}
	if !k.Namespaced && o.GetNamespace() != "" {
		return fmt.Errorf("%s %q: metadata.namespace: Forbidden: %s is not namespaced", k.GVK.Kind, o.GetName(), k.Resource)
	}
	k.Default(o)
	errs := append(validateMeta(k, o), k.Validate(o)...)
	return Invalid(k, o.GetName(), errs)
}

// Invalid turns a field error list into one error naming kind and object,
// or nil if the list is empty.
func Invalid(k *Kind, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return &InvalidError{Kind: k.GVK.Kind, Name: name, Errs: errs}
}

// InvalidError is a validation failure: `Pod "web" is invalid: spec...`.
type InvalidError struct {
	Kind, Name string
	Errs       field.ErrorList
}

func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return fmt.Sprintf("%s %q is invalid: %s", e.Kind, e.Name, strings.Join(msgs, "; "))
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out = append(out, line)
	}
	return bytes.Join(out, []byte("\n"))
}
