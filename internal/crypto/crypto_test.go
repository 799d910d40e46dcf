package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/testvectors"
)

func mustNew(tb testing.TB, app testvectors.App) *Crypter {
	tb.Helper()
	c, err := New(app.Token, app.EncodingAESKey, app.ReceiveID)
	require.NoError(tb, err)
	return c
}

func TestCrypter_OfficialVectors(t *testing.T) {
	for _, v := range testvectors.All() {
		t.Run(v.Name, func(t *testing.T) {
			c := mustNew(t, v.App)
			assert.Equal(t, v.Signature, c.Sign(v.Timestamp, v.Nonce, v.Encrypt))
			require.NoError(t, c.Verify(v.Signature, v.Timestamp, v.Nonce, v.Encrypt))
			msg, rid, err := c.Decrypt(v.Encrypt)
			require.NoError(t, err)
			assert.Equal(t, v.Plaintext, msg)
			assert.Equal(t, v.App.ReceiveID, rid)
			msg, err = c.Open(v.Signature, v.Timestamp, v.Nonce, v.Encrypt)
			require.NoError(t, err)
			assert.Equal(t, v.Plaintext, msg)
		})
	}
}

func TestCrypter_RoundTrip(t *testing.T) {
	c := mustNew(t, testvectors.V1)
	// Lengths around the 32-byte padding boundary, including a full pad block.
	for _, n := range []int{0, 1, 11, 12, 13, 31, 32, 33, 300, 4096} {
		msg := strings.Repeat("x", n)
		enc, sig, err := c.Seal(msg, "1700000000", "nonce")
		require.NoError(t, err)
		raw, err := base64.StdEncoding.DecodeString(enc)
		require.NoError(t, err)
		assert.Zero(t, len(raw)%32, "padded to 32-byte blocks")
		got, err := c.Open(sig, "1700000000", "nonce", enc)
		require.NoError(t, err, "n=%d", n)
		assert.Equal(t, msg, got)
	}
	// Encryption is randomized.
	a, _ := c.Encrypt("same")
	b, _ := c.Encrypt("same")
	assert.NotEqual(t, a, b)
}

func TestParseKey(t *testing.T) {
	_, err := ParseKey(testvectors.V1.EncodingAESKey)
	require.NoError(t, err)
	for name, k := range map[string]string{
		"ErrShort":     testvectors.V1.EncodingAESKey[:42],
		"ErrLong":      testvectors.V1.EncodingAESKey + "A",
		"ErrSymbol":    "+" + testvectors.V1.EncodingAESKey[1:],
		"ErrEmpty":     "",
		"ErrNonASCII":  "é" + testvectors.V1.EncodingAESKey[2:],
		"ErrPadSymbol": testvectors.V1.EncodingAESKey[:42] + "=",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKey(k)
			assert.ErrorIs(t, err, ErrAESKey)
			_, err = New("t", k, "r")
			assert.ErrorIs(t, err, ErrAESKey)
		})
	}
}

// rawEncrypt encrypts an arbitrary padded frame with the app's key, so tests
// can build ciphertexts that Encrypt would never produce.
func rawEncrypt(t *testing.T, app testvectors.App, frame []byte) string {
	t.Helper()
	key, err := ParseKey(app.EncodingAESKey)
	require.NoError(t, err)
	block, err := aes.NewCipher(key[:])
	require.NoError(t, err)
	out := make([]byte, len(frame))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, frame)
	return base64.StdEncoding.EncodeToString(out)
}

func frame(msgLen uint32, body string, pad int, padByte byte) []byte {
	b := make([]byte, 20, 20+len(body)+pad)
	binary.BigEndian.PutUint32(b[16:20], msgLen)
	b = append(b, body...)
	for i := 0; i < pad; i++ {
		b = append(b, padByte)
	}
	return b
}

func TestCrypter_DecryptErrors(t *testing.T) {
	app := testvectors.V1
	c := mustNew(t, app)
	good, err := c.Encrypt("hello")
	require.NoError(t, err)
	tampered := []byte(good)
	tampered[10] ^= 'A' ^ 'B'

	tests := []struct {
		name    string
		encrypt string
		want    error
	}{
		{"ErrBase64Garbage", "!!!not base64!!!", ErrBase64},
		{"ErrBase64Truncated", good[:len(good)-1], ErrBase64},
		{"ErrShort", base64.StdEncoding.EncodeToString(make([]byte, 16)), ErrDecrypt},
		{"ErrNotBlocks", base64.StdEncoding.EncodeToString(make([]byte, 40)), ErrDecrypt},
		{"ErrEmpty", "", ErrDecrypt},
		// 20-byte header + 5 body bytes + 7 pad = 32: all built by hand.
		{"ErrPadZero", rawEncrypt(t, app, frame(5, "hello", 7, 0)), ErrDecrypt},
		{"ErrPadTooBig", rawEncrypt(t, app, frame(5, "hello", 7, 33)), ErrDecrypt},
		{"ErrPadBytesDiffer", rawEncrypt(t, app, append(frame(5, "hello", 6, 7), 6)), ErrDecrypt},
		{"ErrLengthPastEnd", rawEncrypt(t, app, frame(6, "hello", 7, 7)), ErrBuffer},
		{"ErrLengthHuge", rawEncrypt(t, app, frame(0xFFFFFFFF, "hello", 7, 7)), ErrBuffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.Decrypt(tt.encrypt)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	t.Run("ErrTamperedFailsSignature", func(t *testing.T) {
		sig := c.Sign("1", "2", good)
		_, err := c.Open(sig, "1", "2", string(tampered))
		assert.ErrorIs(t, err, ErrSignature)
	})
}

func TestCrypter_FrameTooShortIsBuffer(t *testing.T) {
	// A 32-byte block whose padding leaves fewer than 20 bytes of frame.
	app := testvectors.V1
	c := mustNew(t, app)
	f := make([]byte, 32)
	for i := 19; i < 32; i++ {
		f[i] = 13
	}
	_, _, err := c.Decrypt(rawEncrypt(t, app, f))
	assert.ErrorIs(t, err, ErrBuffer)
}

func TestCrypter_Verify(t *testing.T) {
	v := testvectors.All()[0]
	c := mustNew(t, v.App)
	tests := []struct {
		name, sig, ts, nonce, enc string
	}{
		{"ErrEmpty", "", v.Timestamp, v.Nonce, v.Encrypt},
		{"ErrShort", v.Signature[:39], v.Timestamp, v.Nonce, v.Encrypt},
		{"ErrNotHex", "zz" + v.Signature[2:], v.Timestamp, v.Nonce, v.Encrypt},
		{"ErrOtherTimestamp", v.Signature, "1409659590", v.Nonce, v.Encrypt},
		{"ErrOtherNonce", v.Signature, v.Timestamp, "1", v.Encrypt},
		{"ErrOtherPayload", v.Signature, v.Timestamp, v.Nonce, v.Encrypt[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, c.Verify(tt.sig, tt.ts, tt.nonce, tt.enc), ErrSignature)
		})
	}
	t.Run("OKUppercaseHex", func(t *testing.T) {
		assert.NoError(t, c.Verify(strings.ToUpper(v.Signature), v.Timestamp, v.Nonce, v.Encrypt))
	})
	t.Run("ErrOtherToken", func(t *testing.T) {
		other, err := New("other", v.App.EncodingAESKey, v.App.ReceiveID)
		require.NoError(t, err)
		assert.ErrorIs(t, other.Verify(v.Signature, v.Timestamp, v.Nonce, v.Encrypt), ErrSignature)
	})
	t.Run("OKLongPayload", func(t *testing.T) {
		// Longer than the stack buffer: the heap fallback must sign the same way.
		enc := strings.Repeat("A", 3000)
		assert.NoError(t, c.Verify(c.Sign("1", "2", enc), "1", "2", enc))
	})
}

func TestCrypter_OpenWrongReceiveID(t *testing.T) {
	sender, err := New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, "wwSomeoneElse")
	require.NoError(t, err)
	enc, sig, err := sender.Seal("<xml/>", "1", "2")
	require.NoError(t, err)
	_, err = mustNew(t, testvectors.V1).Open(sig, "1", "2", enc)
	assert.ErrorIs(t, err, ErrReceiveID)
}

func TestError_CodesAndText(t *testing.T) {
	var e *Error
	require.True(t, errors.As(error(ErrSignature), &e))
	assert.Equal(t, -40001, e.Code)
	for _, err := range []*Error{ErrSignature, ErrParse, ErrAESKey, ErrReceiveID, ErrDecrypt, ErrBuffer, ErrBase64} {
		assert.True(t, strings.HasPrefix(err.Error(), "wxbizmsgcrypt: "))
	}
}
