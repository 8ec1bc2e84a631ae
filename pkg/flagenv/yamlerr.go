package flagenv

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yaml.v3 reports decoding errors in terms of Go types ("cannot unmarshal
// !!str `x` into time.Duration", "field foo not found in type
// gateway.Config"). A user knows the file, not the types: these patterns
// are rewritten to name the YAML key path and what the key wants.
var (
	unmarshalErr = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	unknownErr   = regexp.MustCompile(`^line (\d+): field (.+) not found in type .+$`)
)

// yamlError describes err, from decoding data, by YAML keys and lines.
func yamlError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // it decoded into cfg, so it parses
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = describe(&root, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

func describe(root *yaml.Node, msg string) string {
	if m := unknownErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return fmt.Sprintf("line %d: unknown key %s", line, keyAt(root, line, m[2]))
	}
	if m := unmarshalErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		got := kindOfTag(m[2])
		if m[3] != "" {
			got = strconv.Quote(m[3])
		}
		return fmt.Sprintf("line %d: %s: %s is not %s", line, keyAt(root, line, ""), got, kindOfGoType(m[4]))
	}
	return msg
}

// keyAt is the dotted path of the deepest key on line (its key or its
// value starts there), or name if none is found.
func keyAt(root *yaml.Node, line int, name string) string {
	var best []string
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(append([]string(nil), path...), k.Value)
				if (k.Line == line || v.Line == line) && len(p) >= len(best) && (name == "" || k.Value == name) {
					best = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append([]string(nil), path...)
				if len(p) > 0 {
					p[len(p)-1] += fmt.Sprintf("[%d]", i)
				}
				if c.Line == line && len(p) > len(best) {
					best = p
				}
				walk(c, p)
			}
		}
	}
	walk(root, nil)
	if best == nil {
		if name != "" {
			return name
		}
		return "(top level)"
	}
	return strings.Join(best, ".")
}

func kindOfTag(tag string) string {
	switch tag {
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "null":
		return "null"
	}
	return "a " + tag
}

func kindOfGoType(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration (e.g. 500ms, 10s, 1m30s)"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return "a mapping of keys"
}
