package callback

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"

	"github.com/wecomhit/wecomhit/internal/crypto"
)

// rawCBC encrypts frame (a multiple of 16 bytes) with the app's AES key and
// WeCom's IV, without framing or padding.
func rawCBC(encodingAESKey string, frame []byte) (string, error) {
	key, err := crypto.ParseKey(encodingAESKey)
	if err != nil {
		return "", err
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return "", err
	}
	out := make([]byte, len(frame))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, frame)
	return base64.StdEncoding.EncodeToString(out), nil
}
