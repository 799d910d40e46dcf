// Package callbacktest builds signed WeCom callback requests for tests: good
// ones, and every kind of bad one the callback endpoint must refuse, so the
// handler's unit tests and the service's end-to-end tests share one table.
package callbacktest

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// HitToken is the token inside HitKeywordXML.
const HitToken = "tkn-7f3a9c1e5b2d4a6f8e0c1b3d5f7a9c2e4b6d8f0a"

// HitKeywordXML is a hit_keyword callback as documented (protocol §2a).
const HitKeywordXML = `<xml>
  <SuiteId><![CDATA[wwArchiveSuite01]]></SuiteId>
  <AuthCorpId><![CDATA[wwCorpABC123]]></AuthCorpId>
  <InfoType><![CDATA[hit_keyword]]></InfoType>
  <Token><![CDATA[` + HitToken + `]]></Token>
  <TimeStamp>1717000000</TimeStamp>
</xml>`

// XMLEnvelope wraps a ciphertext the way WeCom posts it.
func XMLEnvelope(encrypt string) string {
	return "<xml><ToUserName><![CDATA[wwArchiveSuite01]]></ToUserName><Encrypt><![CDATA[" + encrypt + "]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
}

// JSONEnvelope wraps a ciphertext in the JSON envelope.
func JSONEnvelope(toUser, encrypt string) string {
	return `{"tousername":"` + toUser + `","encrypt":"` + encrypt + `","agentid":218}`
}

// Query is the signed query string of a callback.
func Query(signature, timestamp, nonce string) url.Values {
	return url.Values{"msg_signature": {signature}, "timestamp": {timestamp}, "nonce": {nonce}}
}

// WithEcho returns a copy of q with echostr set.
func WithEcho(q url.Values, echostr string) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	out.Set("echostr", echostr)
	return out
}

// Seal encrypts and signs msg for c and returns the query and the ciphertext.
func Seal(tb testing.TB, c *crypto.Crypter, msg, timestamp string) (url.Values, string) {
	tb.Helper()
	enc, sig, err := c.Seal(msg, timestamp, "n1")
	if err != nil {
		tb.Fatal(err)
	}
	return Query(sig, timestamp, "n1"), enc
}

// RawCBC encrypts frame (whole AES blocks) with the app's key and WeCom's IV,
// without framing or padding, to build ciphertexts Encrypt never would.
func RawCBC(tb testing.TB, encodingAESKey string, frame []byte) string {
	tb.Helper()
	key, err := crypto.ParseKey(encodingAESKey)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]byte, len(frame))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, frame)
	return base64.StdEncoding.EncodeToString(out)
}

// Request is one request to send and the refusal it must get.
type Request struct {
	Name   string
	Method string
	App    string
	Query  url.Values
	Body   string
	Status int
	Reason string
}

// Bad returns one request for every refusal the endpoint makes, against the
// V1 app of testvectors mounted as app, with otherApp mounted as V2. now is
// the endpoint's clock; the timestamp window must be one hour and the body
// limit at least 1 KiB and below 2 KiB.
func Bad(tb testing.TB, app, otherApp string, now time.Time) []Request {
	tb.Helper()
	v := testvectors.V1
	c, err := crypto.New(v.Token, v.EncodingAESKey, v.ReceiveID)
	if err != nil {
		tb.Fatal(err)
	}
	otherRID, err := crypto.New(v.Token, v.EncodingAESKey, "wwSomeoneElse")
	if err != nil {
		tb.Fatal(err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	// signed signs an arbitrary Encrypt, as someone holding the token could.
	signed := func(enc string) url.Values { return Query(c.Sign(ts, "n1", enc), ts, "n1") }
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }

	goodQ, goodEnc := Seal(tb, c, HitKeywordXML, ts)
	tampered := []byte(goodEnc)
	tampered[20] ^= 1
	staleQ, staleEnc := Seal(tb, c, HitKeywordXML, at(-2*time.Hour))
	futureQ, futureEnc := Seal(tb, c, HitKeywordXML, at(2*time.Hour))
	ridQ, ridEnc := Seal(tb, otherRID, HitKeywordXML, ts)
	badXMLQ, badXMLEnc := Seal(tb, c, "<xml><InfoType>hit_keyword</InfoType>", ts)
	doctypeQ, doctypeEnc := Seal(tb, c, `<!DOCTYPE xml [<!ENTITY t "x">]><xml><Token>&t;</Token></xml>`, ts)
	badJSONQ, badJSONEnc := Seal(tb, c, `{"InfoType":"hit_keyword","Token":`, ts)
	zeroPad := RawCBC(tb, v.EncodingAESKey, make([]byte, 32))
	bigLen := make([]byte, 32)
	copy(bigLen[16:20], []byte{0xff, 0xff, 0xff, 0xff})
	for i := 20; i < 32; i++ {
		bigLen[i] = 12
	}
	pastEnd := RawCBC(tb, v.EncodingAESKey, bigLen)

	post := func(name string, q url.Values, body string, status int, reason string) Request {
		return Request{Name: name, Method: "POST", App: app, Query: q, Body: body, Status: status, Reason: reason}
	}
	get := func(name string, q url.Values, status int, reason string) Request {
		return Request{Name: name, Method: "GET", App: app, Query: q, Status: status, Reason: reason}
	}
	other := post("OtherAppsSignature", goodQ, XMLEnvelope(goodEnc), 403, "bad_signature")
	other.App = otherApp
	unknown := post("UnknownApp", goodQ, XMLEnvelope(goodEnc), 404, "unknown_app")
	unknown.App = "no-such-app"

	return []Request{
		post("BadSignature", Query(strings.Repeat("0", 40), ts, "n1"), XMLEnvelope(goodEnc), 403, "bad_signature"),
		post("SignatureNotHex", Query("zz", ts, "n1"), XMLEnvelope(goodEnc), 403, "bad_signature"),
		post("TamperedCiphertext", goodQ, XMLEnvelope(string(tampered)), 403, "bad_signature"),
		other,
		post("BadBase64", signed("@@@@"), XMLEnvelope("@@@@"), 400, "bad_ciphertext"),
		post("BadPadding", signed(zeroPad), XMLEnvelope(zeroPad), 400, "bad_ciphertext"),
		post("LengthPastEnd", signed(pastEnd), XMLEnvelope(pastEnd), 400, "bad_ciphertext"),
		post("WrongReceiveID", ridQ, XMLEnvelope(ridEnc), 403, "bad_receive_id"),
		get("PostReplayedAsGet", WithEcho(goodQ, goodEnc), 403, "not_verification_string"),
		unknown,
		post("MalformedEnvelopeXML", goodQ, "<xml><Encrypt>"+goodEnc, 400, "malformed"),
		post("MalformedEnvelopeJSON", goodQ, `{"encrypt":`, 400, "malformed"),
		post("NeitherXMLNorJSON", goodQ, "Encrypt="+goodEnc, 400, "malformed"),
		post("EmptyBody", goodQ, "", 400, "malformed"),
		post("MalformedEventXML", badXMLQ, XMLEnvelope(badXMLEnc), 400, "malformed"),
		post("MalformedEventJSON", badJSONQ, XMLEnvelope(badJSONEnc), 400, "malformed"),
		post("DoctypeInEnvelope", goodQ, `<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>`+XMLEnvelope(goodEnc), 400, "xml_doctype"),
		post("DoctypeInEvent", doctypeQ, XMLEnvelope(doctypeEnc), 400, "xml_doctype"),
		post("OversizedBody", goodQ, XMLEnvelope(goodEnc)+strings.Repeat(" ", 2048), 413, "body_too_large"),
		post("StaleTimestampPost", staleQ, XMLEnvelope(staleEnc), 403, "stale_timestamp"),
		post("FutureTimestampPost", futureQ, XMLEnvelope(futureEnc), 403, "stale_timestamp"),
		get("StaleTimestampGet", WithEcho(staleQ, staleEnc), 403, "stale_timestamp"),
		post("TimestampNotNumber", Query(goodQ.Get("msg_signature"), "soon", "n1"), XMLEnvelope(goodEnc), 400, "bad_timestamp"),
		post("MissingSignature", url.Values{"timestamp": {ts}, "nonce": {"n1"}}, XMLEnvelope(goodEnc), 400, "missing_param"),
		get("MissingEchostr", goodQ, 400, "missing_param"),
	}
}

// Secrets lists strings that must never appear in logs while Bad's requests
// are served: the key, the token, the hit token, and a ciphertext.
func Secrets() []string {
	return []string{testvectors.V1.EncodingAESKey, testvectors.V1.Token, HitToken, "tkn-7f3a"}
}
