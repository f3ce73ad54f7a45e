// Oracle for tests/test_cli_config.py: a stack file's config as the Pulumi CLI builds it, with the real
// gopkg.in/yaml.v3 v3.0.1 (the version pulumi's sdk/go.mod pins) and the steps of pulumi
// sdk/go/common/workspace/loaders.go LoadProjectStackBytes (decode into any, SimplifyMarshalledProject, namespace
// the keys, yamlutil.YamlEncode, decode again), resource/config/value.go UnmarshalYAML, object.go unmarshalObject
// and MarshalString, and map.go Decrypt (JSON re-read with UseNumber), copied from pulumi commit
// 1b5949891b3cefcb9974752b24a5ecef0acc86c8; a ciphertext decrypts to "[S]".
//
// Build (Debian: apt-get install golang-go golang-gopkg-yaml.v3-dev):
//   GO111MODULE=off GOPATH=/usr/share/gocode go build -o oracle . && ./oracle stack.yaml
// Prints {"<key>": {"Text": ..., "Secure": ..., "Object": ...}} or {"error": ...}.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	yaml "gopkg.in/yaml.v3"
)

type secret struct{ v string }

func unmarshalObject(v any) (any, error) {
	switch v := v.(type) {
	case bool, string, nil:
		return v, nil
	case int:
		return int64(v), nil
	case uint64, int64, float64:
		return v, nil
	case time.Time:
		return v.String(), nil
	case map[string]any:
		if len(v) == 1 {
			if s, ok := v["secure"].(string); ok {
				return secret{s}, nil
			}
		}
		m := map[string]any{}
		for k, x := range v {
			o, err := unmarshalObject(x)
			if err != nil {
				return nil, err
			}
			m[k] = o
		}
		return m, nil
	case map[any]any:
		m := map[string]any{}
		for k, x := range v {
			m[fmt.Sprintf("%v", k)] = x
		}
		return unmarshalObject(m)
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			o, err := unmarshalObject(x)
			if err != nil {
				return nil, err
			}
			a[i] = o
		}
		return a, nil
	}
	return nil, fmt.Errorf("unexpected %T", v)
}

func decrypted(v any) any {
	switch v := v.(type) {
	case secret:
		return "[S]"
	case map[string]any:
		m := map[string]any{}
		for k, x := range v {
			m[k] = decrypted(x)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = decrypted(x)
		}
		return a
	}
	return v
}

func secure(v any) bool {
	switch v := v.(type) {
	case secret:
		return true
	case map[string]any:
		for _, x := range v {
			if secure(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if secure(x) {
				return true
			}
		}
	}
	return false
}

type Value struct {
	Text   string
	Secure bool
	Object bool
}

func (c *Value) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	o, err := unmarshalObject(v)
	if err != nil {
		return err
	}
	switch o := o.(type) {
	case bool, int64, uint64, float64:
		b, err := json.Marshal(o)
		c.Text = string(b)
		return err
	case string:
		c.Text = o
	case secret:
		c.Text, c.Secure = "[S]", true
	case nil:
		b, _ := json.Marshal(o)
		c.Text, c.Object = string(b), true
	default:
		// MarshalString then Decrypt: JSON, re-read with UseNumber, marshalled again.
		b, err := json.Marshal(decrypted(o))
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var back any
		if err := dec.Decode(&back); err != nil {
			return err
		}
		b, err = json.Marshal(numbers(back))
		c.Text, c.Secure, c.Object = string(b), secure(o), true
		return err
	}
	return nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, x := range v {
			v[k] = numbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = numbers(x)
		}
	}
	return v
}

func simplify(value any) (any, error) {
	if m, ok := value.(map[any]any); ok {
		s := map[string]any{}
		for k, x := range m {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("expected only string keys, got '%s'", k)
			}
			y, err := simplify(x)
			if err != nil {
				return nil, err
			}
			s[ks] = y
		}
		return s, nil
	} else if a, ok := value.([]any); ok {
		out := make([]any, len(a))
		for i, x := range a {
			y, err := simplify(x)
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	}
	return value, nil
}

type stack struct {
	Config map[string]Value `yaml:"config"`
}

func main() {
	b, _ := os.ReadFile(os.Args[1])
	var raw any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		fmt.Println(`{"error":` + quote(err.Error()) + `}`)
		return
	}
	s, err := simplify(raw)
	if err != nil {
		fmt.Println(`{"error":` + quote(err.Error()) + `}`)
		return
	}
	if top, ok := s.(map[string]any); ok {
		if cfg, ok := top["config"].(map[string]any); ok {
			n := map[string]any{}
			for k, v := range cfg {
				if !bytes.Contains([]byte(k), []byte(":")) {
					k = "mtls-mesh:" + k
				}
				n[k] = v
			}
			top["config"] = n
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		fmt.Println(`{"error":` + quote(err.Error()) + `}`)
		return
	}
	var st stack
	if err := yaml.Unmarshal(buf.Bytes(), &st); err != nil {
		fmt.Println(`{"error":` + quote(err.Error()) + `}`)
		return
	}
	out, _ := json.Marshal(st.Config)
	fmt.Println(string(out))
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
