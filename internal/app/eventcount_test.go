package app_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
)

// countEvents subscribes to subject on its own TCP connection to url,
// logged in with the nkey seed in seedFile, and calls onEvent for each
// message delivered, from one goroutine, until the test ends.
//
// It reads the NATS protocol's frames and skips their bodies without
// decoding headers or payloads: it stands for consumers in other
// processes, whose own work is not the receiver's. A nats.go subscriber
// in the benchmark's process decodes every event's 17 headers into a map
// (5–6% of the process's CPU in BenchmarkPipeline's profile), which
// cpu-us/hit would otherwise charge to the pipeline; and on the
// receiver's own connection it also holds up the receiver's acks behind
// the events in one read loop. What the server spends delivering to it is
// counted, as for any consumer.
func countEvents(tb testing.TB, url, seedFile, subject string, onEvent func()) {
	tb.Helper()
	seed, err := os.ReadFile(seedFile)
	require.NoError(tb, err)
	kp, err := nkeys.ParseDecoratedNKey(seed)
	require.NoError(tb, err)
	pub, err := kp.PublicKey()
	require.NoError(tb, err)

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = conn.Close() })
	r := bufio.NewReaderSize(conn, 64<<10)
	line, err := r.ReadString('\n')
	require.NoError(tb, err)
	var info struct {
		Nonce string `json:"nonce"`
	}
	require.NoError(tb, json.Unmarshal([]byte(strings.TrimPrefix(line, "INFO ")), &info), line)
	sig, err := kp.Sign([]byte(info.Nonce))
	require.NoError(tb, err)
	connect, err := json.Marshal(map[string]any{
		"verbose": false, "pedantic": false, "headers": true, "protocol": 1,
		"nkey": pub, "sig": base64.RawURLEncoding.EncodeToString(sig),
	})
	require.NoError(tb, err)
	_, err = fmt.Fprintf(conn, "CONNECT %s\r\nSUB %s 1\r\nPING\r\n", connect, subject)
	require.NoError(tb, err)
	// The PONG says the server has the subscription.
	require.NoError(tb, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		line, err := r.ReadString('\n')
		require.NoError(tb, err)
		require.False(tb, strings.HasPrefix(line, "-ERR"), line)
		if strings.HasPrefix(line, "PONG") {
			break
		}
	}
	require.NoError(tb, conn.SetReadDeadline(time.Time{}))

	go func() {
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return // closed at the end of the test
			}
			switch {
			case bytes.HasPrefix(line, []byte("HMSG ")), bytes.HasPrefix(line, []byte("MSG ")):
				// The last field is the body's length, headers included.
				f := bytes.TrimRight(line, "\r\n")
				n, err := strconv.Atoi(string(f[bytes.LastIndexByte(f, ' ')+1:]))
				if err != nil {
					return
				}
				if _, err := r.Discard(n + 2); err != nil {
					return
				}
				onEvent()
			case bytes.HasPrefix(line, []byte("PING")):
				if _, err := conn.Write([]byte("PONG\r\n")); err != nil {
					return
				}
			}
		}
	}()
}
