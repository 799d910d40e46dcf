package config

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// sampleTokens and sampleAESKeys are the callback Tokens and EncodingAESKeys
// of WeCom's published WXBizMsgCrypt samples (the Go, C# and Python ones,
// and the worked example of the callback documentation). Anyone can sign and
// encrypt callbacks with them, so an endpoint configured with one accepts
// forged events from the whole internet. internal/testvectors holds the
// same values for tests; config_test checks the two lists agree.
var (
	sampleTokens  = []string{"QDG6eK", "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"}
	sampleAESKeys = []string{
		"jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
		"6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
	}
)

// SampleSecret reports whether app's callback Token or EncodingAESKey is
// one of WeCom's published sample values.
func SampleSecret(app *App) bool {
	return slices.Contains(sampleTokens, string(app.Token)) || sampleAESKey(string(app.EncodingAESKey))
}

// sampleAESKey reports whether key decodes to the AES key of a sample
// EncodingAESKey. Comparing the text is not enough: of a 43-character key's
// 258 bits only 256 are the key, and the decoder (internal/crypto) ignores
// the last character's low two bits, so each sample key has four spellings.
func sampleAESKey(key string) bool {
	got, err := base64.StdEncoding.DecodeString(key + "=")
	if err != nil {
		return false
	}
	for _, s := range sampleAESKeys {
		want, err := base64.StdEncoding.DecodeString(s + "=")
		if err == nil && bytes.Equal(got, want) {
			return true
		}
	}
	return false
}

// validateSamples refuses the published sample values unless
// allow_sample_secrets is on. The rule says which variable to set when the
// value came from one.
func (c *Config) validateSamples(v *validator) {
	if c.AllowSampleSecrets {
		return
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		p := fmt.Sprintf("apps[%d]", i)
		if slices.Contains(sampleTokens, string(a.Token)) {
			v.add(p+".token", "is WeCom's published sample Token, with which anyone can sign callbacks: "+
				c.setHint(p+".token", "the app's callback Token from the WeCom console")+
				" (allow_sample_secrets: true permits it, for the simulator and test rigs only)")
		}
		if sampleAESKey(string(a.EncodingAESKey)) {
			v.add(p+".encoding_aes_key", "is WeCom's published sample EncodingAESKey, with which anyone can encrypt callbacks: "+
				c.setHint(p+".encoding_aes_key", "the app's EncodingAESKey from the WeCom console")+
				" (allow_sample_secrets: true permits it, for the simulator and test rigs only)")
		}
	}
}

// setHint says how to give path the value what: through the environment
// variable it was read from, or directly.
func (c *Config) setHint(path, what string) string {
	if name, ok := c.envVars[path]; ok {
		return "set " + name + " to " + what
	}
	return "set it to " + what + ", preferably from the environment (${VAR})"
}

// nameEmptyVars adds to each "required" rule the environment variable whose
// empty value left the field empty, so the message says what to set.
func (c *Config) nameEmptyVars(errs []error) {
	for _, err := range errs {
		if fe, ok := err.(*FieldError); ok && strings.HasPrefix(fe.Rule, "required") {
			if name, ok := c.envVars[fe.Path]; ok {
				fe.Rule += " (set " + name + ", which is empty)"
			}
		}
	}
}
