package config

const redacted = "<redacted>"

// Secret is a configuration value that must not leak: fmt's verbs (%#v
// included), JSON, YAML and text marshalling all show "<redacted>", so a
// Config can be printed or logged whole. An empty Secret shows as "", which
// tells a reader it is unset. Reveal returns the value.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString covers %#v, which would otherwise print the value.
func (s Secret) GoString() string { return "config.Secret(" + `"` + s.String() + `")` }

func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
