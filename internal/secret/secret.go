// Package secret holds Secret, the string type of every value that must not
// leak (corp and suite secrets, permanent codes, tokens, AES keys): it
// redacts itself wherever it is printed or marshalled. It lives apart from
// config so that packages holding secrets (the WeCom client, the corp
// registry) need not import the configuration to do so.
//
// It does not keep secrets in memory safely (no zeroing, no locking); it
// only keeps them out of logs, errors and output.
package secret

const redacted = "<redacted>"

// Secret is a value that must not leak: fmt's verbs (%#v included), JSON,
// YAML and text marshalling all show "<redacted>", so a struct holding one
// can be printed or logged whole. An empty Secret shows as "", which tells
// a reader it is unset. Reveal returns the value.
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
func (s Secret) GoString() string { return "secret.Secret(" + `"` + s.String() + `")` }

func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
