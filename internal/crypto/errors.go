package crypto

// Error is a WXBizMsgCrypt failure. Code mirrors the status codes of WeCom's
// official libraries so logs can be compared with theirs. Messages never
// contain key material or plaintext.
type Error struct {
	Code int
	msg  string
}

func (e *Error) Error() string { return "wxbizmsgcrypt: " + e.msg }

// The failures Open and Decrypt return. Compare with errors.Is.
var (
	// ErrSignature: msg_signature missing, malformed or not matching (-40001).
	ErrSignature = &Error{Code: -40001, msg: "signature mismatch"}
	// ErrParse: the envelope or message could not be parsed (-40002). The
	// callback package returns it for malformed XML or JSON.
	ErrParse = &Error{Code: -40002, msg: "malformed message"}
	// ErrAESKey: the EncodingAESKey is not 43 letters and digits (-40004).
	ErrAESKey = &Error{Code: -40004, msg: "invalid EncodingAESKey"}
	// ErrReceiveID: the frame's receive id is not the expected one (-40005).
	ErrReceiveID = &Error{Code: -40005, msg: "receive id mismatch"}
	// ErrDecrypt: not whole AES blocks, or bad PKCS#7 padding (-40007).
	ErrDecrypt = &Error{Code: -40007, msg: "aes decrypt failed"}
	// ErrBuffer: the frame is too short or its length field runs past the end (-40008).
	ErrBuffer = &Error{Code: -40008, msg: "invalid frame"}
	// ErrBase64: the ciphertext is not standard padded base64 (-40010).
	ErrBase64 = &Error{Code: -40010, msg: "base64 decode failed"}
)
