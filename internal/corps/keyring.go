package corps

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors about keys. They name key ids, never key bytes or plaintext.
var (
	// ErrNoKeys: the registry was opened without a Keyring, so it can list
	// and cancel corps but not read or store permanent codes.
	ErrNoKeys = errors.New("corps: no encryption keys configured")
	// ErrUnknownKey: a permanent code is sealed under a key id the Keyring
	// does not have, typically a key rotated out before Rekey ran.
	ErrUnknownKey = errors.New("corps: permanent code sealed under an unknown key id")
	// ErrDecrypt: the key id is known but the ciphertext does not open with
	// it: the key under that id changed, or the entry was tampered with or
	// moved to another (app, corp).
	ErrDecrypt = errors.New("corps: permanent code does not decrypt")
	// ErrBadKey: NewKeyring got an unusable key or key id.
	ErrBadKey = errors.New("corps: bad encryption key")
)

// KeySize is the size of an encryption key: AES-256.
const KeySize = 32

// Keyring holds the keys permanent codes are sealed with (AES-256-GCM):
// every key that may still be in use, by id, and the id new codes are
// sealed under. It is safe for concurrent use and never prints a key.
type Keyring struct {
	aeads   map[string]cipher.AEAD
	current string
}

// NewKeyring checks keys and returns a Keyring sealing under current. Each
// key is KeySize bytes; ids are 1 to 64 characters of [A-Za-z0-9_-] (they
// are stored beside each ciphertext). Errors match ErrBadKey.
func NewKeyring(keys map[string][]byte, current string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrBadKey)
	}
	k := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys)), current: current}
	for id, key := range keys {
		if !validKeyID(id) {
			return nil, fmt.Errorf("%w: key id %q: want 1 to 64 of [A-Za-z0-9_-]", ErrBadKey, id)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want %d", ErrBadKey, id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrBadKey, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrBadKey, id, err)
		}
		k.aeads[id] = aead
	}
	if _, ok := k.aeads[current]; !ok {
		return nil, fmt.Errorf("%w: current key id %q is not among the keys", ErrBadKey, current)
	}
	return k, nil
}

// NewKeyringBase64 is NewKeyring for keys written in the configuration:
// each value is standard base64 (padded) of KeySize bytes, as
// `openssl rand -base64 32` prints. Errors name the key id, never the
// value.
func NewKeyringBase64(keys map[string]string, current string) (*Keyring, error) {
	raw := make(map[string][]byte, len(keys))
	for id, v := range keys {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%w: key %q is not standard base64", ErrBadKey, id)
		}
		raw[id] = b
	}
	return NewKeyring(raw, current)
}

// Current is the id new codes are sealed under.
func (k *Keyring) Current() string { return k.current }

// IDs lists the key ids, sorted.
func (k *Keyring) IDs() []string {
	ids := make([]string, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// String names the key ids only.
func (k *Keyring) String() string {
	return fmt.Sprintf("corps.Keyring{current: %q, ids: %q}", k.current, k.IDs())
}

// GoString covers %#v, which would otherwise print the ciphers' state.
func (k *Keyring) GoString() string { return k.String() }

func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Sealed is a permanent code encrypted under the key KeyID: a random
// 12-byte nonce followed by the GCM ciphertext and tag. The additional
// data binds it to its (app, corp) and key id, so a sealed code copied to
// another entry does not open.
type Sealed struct {
	KeyID string `json:"key_id"`
	Data  []byte `json:"data"`
}

// aad is the additional authenticated data of a sealed code.
func aad(app, corp, keyID string) []byte {
	return []byte("wecomhit/corps/v1\x00" + app + "\x00" + corp + "\x00" + keyID)
}

// seal encrypts code for (app, corp) under the current key.
func (k *Keyring) seal(app, corp, code string) (*Sealed, error) {
	if k == nil {
		return nil, ErrNoKeys
	}
	aead := k.aeads[k.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(code)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("corps: nonce: %w", err)
	}
	return &Sealed{KeyID: k.current, Data: aead.Seal(nonce, nonce, []byte(code), aad(app, corp, k.current))}, nil
}

// open decrypts s, sealed for (app, corp).
func (k *Keyring) open(app, corp string, s *Sealed) (string, error) {
	if k == nil {
		return "", ErrNoKeys
	}
	aead, ok := k.aeads[s.KeyID]
	if !ok {
		return "", fmt.Errorf("%w: %q (have %q)", ErrUnknownKey, s.KeyID, k.IDs())
	}
	n := aead.NonceSize()
	if len(s.Data) < n+aead.Overhead() {
		return "", fmt.Errorf("%w: key %q: ciphertext too short", ErrDecrypt, s.KeyID)
	}
	plain, err := aead.Open(nil, s.Data[:n], s.Data[n:], aad(app, corp, s.KeyID))
	if err != nil {
		return "", fmt.Errorf("%w: key %q", ErrDecrypt, s.KeyID)
	}
	return string(plain), nil
}
