// Command baseline is the yardstick of BENCHMARKS.md: the callback
// receiver one would write by hand from WeCom's documentation, kept
// deliberately plain. net/http serves POST /callback/{app}; encoding/xml
// reads the envelope and the decrypted message; the SHA-1 signature is
// checked and the AES-256-CBC ciphertext opened with the standard library;
// each callback is stored with a synchronous JetStream PublishMsg carrying
// a Nats-Msg-Id, and answered "success" after the PubAck.
//
// It embeds its own nats-server, as the service does, so both are measured
// as one process. It is not a product: no metrics, no health, one app.
// The app's token and EncodingAESKey come from BASELINE_TOKEN and
// BASELINE_ENCODING_AES_KEY.
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Stream is where the baseline stores callbacks, on subjects
// baseline.callback.<app>.<kind>.
const Stream = "BASELINE_CALLBACKS"

type envelope struct {
	ToUserName string `xml:"ToUserName"`
	Encrypt    string `xml:"Encrypt"`
}

type message struct {
	InfoType string `xml:"InfoType"`
	Event    string `xml:"Event"`
}

type receiver struct {
	app, token, receiveID string
	key                   []byte
	js                    nats.JetStreamContext
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "HTTP listen address")
	natsListen := flag.String("nats-listen", "127.0.0.1:0", "embedded NATS listen address (loopback)")
	storeDir := flag.String("store-dir", "", "JetStream store directory (required)")
	app := flag.String("app", "archive", "app name: the {app} path segment")
	receiveID := flag.String("receive-id", "", "receive id the callbacks must carry")
	flag.Parse()
	if *storeDir == "" {
		log.Fatal("baseline: -store-dir required")
	}
	key, err := base64.StdEncoding.DecodeString(os.Getenv("BASELINE_ENCODING_AES_KEY") + "=")
	if err != nil || len(key) != 32 {
		log.Fatal("baseline: BASELINE_ENCODING_AES_KEY must be a 43-character EncodingAESKey")
	}
	token := os.Getenv("BASELINE_TOKEN")
	if token == "" {
		log.Fatal("baseline: BASELINE_TOKEN required")
	}

	host, port, err := net.SplitHostPort(*natsListen)
	if err != nil {
		log.Fatalf("baseline: -nats-listen: %v", err)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		log.Fatalf("baseline: -nats-listen port: %v", err)
	}
	if p == 0 {
		// nats-server reads 0 as its default port, 4222, where a local
		// NATS may already listen; RANDOM_PORT is its "any free port".
		p = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: p, JetStream: true, StoreDir: *storeDir, NoSigs: true})
	if err != nil {
		log.Fatalf("baseline: nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("baseline: nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatalf("baseline: connect: %v", err)
	}
	js, err := nc.JetStream()
	if err != nil {
		log.Fatalf("baseline: %v", err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: Stream, Subjects: []string{"baseline.callback.>"},
		Storage: nats.FileStorage, Duplicates: time.Hour}); err != nil {
		log.Fatalf("baseline: stream: %v", err)
	}
	r := &receiver{app: *app, token: token, receiveID: *receiveID, key: key, js: js}
	http.HandleFunc("POST /callback/{app}", r.serve)
	// The runner reads the NATS URL from this line.
	fmt.Printf("baseline: http %s nats %s\n", *listen, ns.ClientURL())
	log.Fatal(http.ListenAndServe(*listen, nil))
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("app") != rc.app {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var env envelope
	if err := xml.Unmarshal(body, &env); err != nil || env.Encrypt == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	if !rc.verify(q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), env.Encrypt) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	plain, err := rc.decrypt(env.Encrypt)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var m message
	if err := xml.Unmarshal(plain, &m); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	kind := m.InfoType
	if kind == "" {
		kind = m.Event
	}
	if kind == "" || strings.ContainsAny(kind, ".*> \t\r\n") {
		kind = "unknown"
	}
	// The service's record id: WeCom's retries of one ciphertext share it.
	sum := sha256.Sum256([]byte(rc.app + "\x00" + env.Encrypt))
	msg := nats.NewMsg("baseline.callback." + rc.app + "." + kind)
	msg.Data = plain
	msg.Header.Set(nats.MsgIdHdr, hex.EncodeToString(sum[:16]))
	if _, err := rc.js.PublishMsg(msg); err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "success")
}

// verify checks WeCom's signature: SHA-1 over the sorted token,
// timestamp, nonce and ciphertext.
func (rc *receiver) verify(sig, ts, nonce, enc string) bool {
	parts := []string{rc.token, ts, nonce, enc}
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	want := hex.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(sig)) == 1
}

// decrypt opens the ciphertext: AES-256-CBC with the key's first 16 bytes
// as IV, PKCS#7 padding to 32 bytes, then random(16) ‖ length(4) ‖ msg ‖
// receive id.
func (rc *receiver) decrypt(enc string) ([]byte, error) {
	buf, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, err
	}
	if len(buf) == 0 || len(buf)%aes.BlockSize != 0 {
		return nil, errors.New("ciphertext not whole blocks")
	}
	block, err := aes.NewCipher(rc.key)
	if err != nil {
		return nil, err
	}
	cipher.NewCBCDecrypter(block, rc.key[:aes.BlockSize]).CryptBlocks(buf, buf)
	pad := int(buf[len(buf)-1])
	if pad < 1 || pad > 32 || pad > len(buf) {
		return nil, errors.New("bad padding")
	}
	buf = buf[:len(buf)-pad]
	if len(buf) < 20 {
		return nil, errors.New("short frame")
	}
	n := int(binary.BigEndian.Uint32(buf[16:20]))
	if n > len(buf)-20 {
		return nil, errors.New("bad length")
	}
	if !bytes.Equal(buf[20+n:], []byte(rc.receiveID)) {
		return nil, errors.New("wrong receive id")
	}
	return buf[20 : 20+n], nil
}
