// Package crypto implements WeCom's callback message crypto, known from the
// official libraries as WXBizMsgCrypt: the SHA-1 request signature, AES-256-CBC
// with PKCS#7 padding to 32 bytes, and the plaintext frame that carries the
// message and the receive id.
//
// It does no I/O and keeps no state beyond one app's token and key. Parsing the
// envelope around the ciphertext and deciding what a message means are left
// to the callback package.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"unsafe"
)

const (
	// KeyLen is the length of an EncodingAESKey as configured in WeCom.
	KeyLen = 43
	// blockPad is the PKCS#7 block size WeCom pads to: 32, not AES's 16.
	// A 16-byte unpadder rejects valid WeCom ciphertexts.
	blockPad = 32
	// randomLen and lenLen frame the plaintext:
	// random(16) ‖ msg_len(4, big endian) ‖ msg ‖ receive id.
	randomLen = 16
	lenLen    = 4
	headerLen = randomLen + lenLen
	// signBufLen sizes the stack buffer the signature input is assembled in;
	// callbacks up to a few hundred bytes of ciphertext never touch the heap.
	signBufLen = 1024
)

// Crypter signs, verifies, encrypts and decrypts the callbacks of one WeCom
// app. It is safe for concurrent use.
type Crypter struct {
	token     string
	receiveID string
	iv        [aes.BlockSize]byte
	block     cipher.Block
}

// ParseKey decodes a 43-character EncodingAESKey into the 32-byte AES key.
// It returns ErrAESKey for anything else.
func ParseKey(encodingAESKey string) ([32]byte, error) {
	var key [32]byte
	if len(encodingAESKey) != KeyLen {
		return key, ErrAESKey
	}
	for i := 0; i < len(encodingAESKey); i++ {
		c := encodingAESKey[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return key, ErrAESKey
		}
	}
	// 43 base64 characters plus "=" decode to exactly 32 bytes.
	n, err := base64.StdEncoding.Decode(key[:], []byte(encodingAESKey+"="))
	if err != nil || n != len(key) {
		return [32]byte{}, ErrAESKey
	}
	return key, nil
}

// New returns a Crypter for an app's callback token, EncodingAESKey and the
// receive id its callbacks must carry (CorpID, SuiteId, or empty; see the
// protocol notes). The error, if any, is ErrAESKey and never contains the key.
func New(token, encodingAESKey, receiveID string) (*Crypter, error) {
	key, err := ParseKey(encodingAESKey)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, ErrAESKey
	}
	c := &Crypter{token: token, receiveID: receiveID, block: block}
	// WeCom's IV is the first 16 bytes of the key.
	copy(c.iv[:], key[:aes.BlockSize])
	return c, nil
}

// ReceiveID returns the receive id this Crypter expects and encrypts with.
func (c *Crypter) ReceiveID() string { return c.receiveID }

// Sign returns WeCom's msg_signature: the lowercase hex SHA-1 of the four
// strings sorted byte-wise and concatenated without separators. For URL
// verification, encrypt is the echostr.
func Sign(token, timestamp, nonce, encrypt string) string {
	sum := signSum(token, timestamp, nonce, encrypt)
	return hex.EncodeToString(sum[:])
}

// Sign returns the msg_signature for this app's token.
func (c *Crypter) Sign(timestamp, nonce, encrypt string) string {
	return Sign(c.token, timestamp, nonce, encrypt)
}

// Verify checks msg_signature in constant time. It returns ErrSignature if the
// signature is not 40 hex digits or does not match.
func (c *Crypter) Verify(signature, timestamp, nonce, encrypt string) error {
	var got [sha1.Size]byte
	if len(signature) != 2*sha1.Size {
		return ErrSignature
	}
	if _, err := hex.Decode(got[:], unsafeBytes(signature)); err != nil {
		return ErrSignature
	}
	want := signSum(c.token, timestamp, nonce, encrypt)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return ErrSignature
	}
	return nil
}

func signSum(a, b, c, d string) [sha1.Size]byte {
	s := [4]string{a, b, c, d}
	// Insertion sort: four items, no allocation, byte-wise order as WeCom uses.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	var buf [signBufLen]byte
	p := buf[:0]
	for _, x := range s {
		p = append(p, x...)
	}
	return sha1.Sum(p)
}

// Open verifies the signature, decrypts, and checks the receive id: the whole
// inbound path. msg shares memory with nothing the caller holds.
func (c *Crypter) Open(signature, timestamp, nonce, encrypt string) (msg string, err error) {
	if err := c.Verify(signature, timestamp, nonce, encrypt); err != nil {
		return "", err
	}
	msg, rid, err := c.Decrypt(encrypt)
	if err != nil {
		return "", err
	}
	if rid != c.receiveID {
		return "", ErrReceiveID
	}
	return msg, nil
}

// Decrypt decodes and decrypts a ciphertext and splits the frame into the
// message and the receive id it carries. It does not verify the signature or
// check the receive id; see Open. Every malformed input returns one of
// ErrBase64, ErrDecrypt or ErrBuffer, never a panic.
func (c *Crypter) Decrypt(encrypt string) (msg, receiveID string, err error) {
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(encrypt)))
	n, err := base64.StdEncoding.Decode(buf, unsafeBytes(encrypt))
	if err != nil {
		return "", "", ErrBase64
	}
	buf = buf[:n]
	if len(buf) < blockPad || len(buf)%aes.BlockSize != 0 {
		return "", "", ErrDecrypt
	}
	c.decryptCBC(buf)

	pad := int(buf[len(buf)-1])
	if pad < 1 || pad > blockPad {
		return "", "", ErrDecrypt
	}
	for _, b := range buf[len(buf)-pad:] {
		if int(b) != pad {
			return "", "", ErrDecrypt
		}
	}
	frame := buf[:len(buf)-pad]
	if len(frame) < headerLen {
		return "", "", ErrBuffer
	}
	msgLen := binary.BigEndian.Uint32(frame[randomLen:headerLen])
	if uint64(msgLen) > uint64(len(frame)-headerLen) {
		return "", "", ErrBuffer
	}
	end := headerLen + int(msgLen)
	// buf is ours and is never written again, so the strings can share it:
	// this saves a copy and an allocation on every callback.
	s := unsafe.String(unsafe.SliceData(frame), len(frame))
	return s[headerLen:end], s[end:], nil
}

// decryptCBC decrypts buf in place. Walking the blocks from last to first
// keeps each previous ciphertext block intact until it is needed as the XOR
// input, so no copy of the ciphertext and no cipher.BlockMode is allocated.
func (c *Crypter) decryptCBC(buf []byte) {
	const bs = aes.BlockSize
	for i := len(buf) - bs; i >= 0; i -= bs {
		blk := buf[i : i+bs : i+bs]
		c.block.Decrypt(blk, blk)
		prev := c.iv[:]
		if i > 0 {
			prev = buf[i-bs : i]
		}
		subtle.XORBytes(blk, blk, prev)
	}
}

// Encrypt frames msg with 16 random bytes and this Crypter's receive id,
// pads, encrypts and base64-encodes it, as WeCom does. The service itself only
// decrypts; tests and the WeCom simulator encrypt.
func (c *Crypter) Encrypt(msg string) (string, error) {
	if uint64(len(msg)) > math.MaxUint32 {
		return "", fmt.Errorf("%w: message too long", ErrBuffer)
	}
	n := headerLen + len(msg) + len(c.receiveID)
	pad := blockPad - n%blockPad
	buf := make([]byte, n+pad)
	_, _ = rand.Read(buf[:randomLen]) // crypto/rand.Read never fails (Go ≥ 1.24).
	binary.BigEndian.PutUint32(buf[randomLen:headerLen], uint32(len(msg)))
	copy(buf[headerLen:], msg)
	copy(buf[headerLen+len(msg):], c.receiveID)
	for i := n; i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(c.block, c.iv[:]).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// Seal encrypts msg and signs the result: what WeCom puts in a callback.
func (c *Crypter) Seal(msg, timestamp, nonce string) (encrypt, signature string, err error) {
	encrypt, err = c.Encrypt(msg)
	if err != nil {
		return "", "", err
	}
	return encrypt, c.Sign(timestamp, nonce, encrypt), nil
}

// unsafeBytes views a string as a byte slice for read-only use by decoders,
// avoiding a copy on the hot path. Callers must never write to the result.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
