// Package hittest checks hit events against their published contract, for
// tests: docs/hit-event.schema.json, and the rules of docs/events.md that
// JSON Schema cannot express.
//
// It does not produce events; tests take them from the publisher or the
// stream (Stored reads it), so what is checked is what consumers get.
package hittest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/wecomhit/wecomhit"
)

// maxIDBytes is the receiver's id limit, in bytes of UTF-8; the schema can
// only count characters.
const maxIDBytes = 256

// SchemaPath is the path of docs/hit-event.schema.json, found from this
// file so that any package's tests can use it.
func SchemaPath(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("hittest: cannot locate the source tree")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "hit-event.schema.json")
}

// Contract is the compiled schema, with formats asserted.
type Contract struct {
	c      *jsonschema.Compiler
	schema *jsonschema.Schema
}

// New compiles docs/hit-event.schema.json.
func New(tb testing.TB) *Contract {
	tb.Helper()
	data, err := os.ReadFile(SchemaPath(tb))
	if err != nil {
		tb.Fatalf("hittest: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("hittest: schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("hit-event.schema.json", doc); err != nil {
		tb.Fatalf("hittest: schema: %v", err)
	}
	s, err := c.Compile("hit-event.schema.json")
	if err != nil {
		tb.Fatalf("hittest: schema: %v", err)
	}
	return &Contract{c: c, schema: s}
}

// Part compiles the subschema at a JSON pointer, e.g. "/$defs/party", and
// returns a validator for values of that part alone: cheaper than whole
// events when a test tries many values.
func (c *Contract) Part(tb testing.TB, pointer string) func(payload []byte) error {
	tb.Helper()
	s, err := c.c.Compile("hit-event.schema.json#" + pointer)
	if err != nil {
		tb.Fatalf("hittest: schema part %s: %v", pointer, err)
	}
	return func(payload []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
		if err != nil {
			return fmt.Errorf("not JSON: %w", err)
		}
		return s.Validate(v)
	}
}

// Schema validates payload against the JSON Schema only.
func (c *Contract) Schema(payload []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return c.schema.Validate(v)
}

// Check validates payload against the schema and then the rules the schema
// cannot express (Rules).
func (c *Contract) Check(payload []byte) error {
	if err := c.Schema(payload); err != nil {
		return err
	}
	var ev wecomhit.HitEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return Rules(&ev)
}

// Rules checks what JSON Schema cannot: the event's rule is in rules[] and
// agrees with its entry there, rule ids are unique in rules[], and ids are
// at most 256 bytes of UTF-8.
func Rules(ev *wecomhit.HitEvent) error {
	var errs []error
	for field, id := range map[string]string{"corp_id": ev.CorpID, "msgid": ev.MsgID, "rule_id": ev.RuleID} {
		if len(id) > maxIDBytes {
			errs = append(errs, fmt.Errorf("%s longer than %d bytes", field, maxIDBytes))
		}
	}
	seen := make(map[string]bool, len(ev.Rules))
	found := false
	for _, r := range ev.Rules {
		if seen[r.RuleID] {
			errs = append(errs, fmt.Errorf("rule %q listed twice in rules", r.RuleID))
		}
		seen[r.RuleID] = true
		if len(r.RuleID) > maxIDBytes {
			errs = append(errs, fmt.Errorf("rules: rule_id longer than %d bytes", maxIDBytes))
		}
		if r.RuleID != ev.RuleID {
			continue
		}
		found = true
		if r.RuleName != ev.RuleName || r.HasHitKeyword != ev.HasHitKeyword || !slices.Equal(r.Semantics, ev.Semantics) {
			errs = append(errs, fmt.Errorf("rule %q: the event and its rules entry differ", ev.RuleID))
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("rule_id %q is not in rules", ev.RuleID))
	}
	return errors.Join(errs...)
}
