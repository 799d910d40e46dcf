package loadgen_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/loadgen"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// runAgainst runs n callbacks, closed loop over conns connections, to the
// callback path of base with testvectors.V1's secrets.
func runAgainst(t *testing.T, ctx context.Context, base string, mod func(*loadgen.Config)) *loadgen.Result {
	t.Helper()
	v := testvectors.V1
	cfg := loadgen.Config{URL: base + "/callback/archive", Token: v.Token, EncodingAESKey: v.EncodingAESKey,
		ReceiveID: v.ReceiveID, Conns: 2, N: 10, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	res, err := loadgen.Run(ctx, cfg)
	require.NoError(t, err)
	return res
}

// TestRun_Request: each callback is a POST of a signed envelope the
// receiver's own crypto opens, with the signature, timestamp and nonce in
// the query, text/xml, and a distinct plaintext per callback.
func TestRun_Request(t *testing.T) {
	v := testvectors.V1
	cr, err := crypto.New(v.Token, v.EncodingAESKey, v.ReceiveID)
	require.NoError(t, err)
	var (
		mu     sync.Mutex
		plains = map[string]bool{}
		bad    []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body, _ := io.ReadAll(r.Body)
		env := string(body)
		_, rest, _ := strings.Cut(env, "<Encrypt><![CDATA[")
		enc, _, _ := strings.Cut(rest, "]]>")
		msg, err := cr.Open(q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), enc)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/callback/archive":
			bad = append(bad, r.Method+" "+r.URL.Path)
		case r.Header.Get("Content-Type") != "text/xml":
			bad = append(bad, "content type "+r.Header.Get("Content-Type"))
		case err != nil:
			bad = append(bad, err.Error())
		case !strings.Contains(env, "<ToUserName><![CDATA["+v.ReceiveID+"]]></ToUserName>"):
			bad = append(bad, "envelope "+env)
		case !strings.Contains(msg, "<InfoType><![CDATA[suite_ticket]]></InfoType>"):
			bad = append(bad, "plaintext "+msg)
		default:
			plains[msg] = true
		}
		_, _ = io.WriteString(w, "success")
	}))
	t.Cleanup(srv.Close)
	res := runAgainst(t, context.Background(), srv.URL, func(c *loadgen.Config) { c.Kind = "suite_ticket"; c.N = 50 })
	require.Equal(t, map[int]int{200: 50}, res.Status, res.FirstError)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, bad)
	require.Len(t, plains, 50, "every callback's plaintext is its own")
}

// TestRun_Answers: every answer that is an HTTP answer is counted by its
// status, and only 200s count as accepted; a redirect is counted, not
// followed; an answer that closes its connection, or is chunked, is an
// answer like any other.
func TestRun_Answers(t *testing.T) {
	for name, tc := range map[string]struct {
		handler http.HandlerFunc
		status  int
	}{
		"Status500": {func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) }, 500},
		"Status503": {func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, 503},
		"Redirect":  {func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }, 302},
		"Close": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "success")
		}, 200},
		"Chunked": {func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "succ")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "ess")
		}, 200},
	} {
		t.Run(name, func(t *testing.T) {
			var elsewhere atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("/callback/archive", tc.handler)
			mux.HandleFunc("/elsewhere", func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) })
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			res := runAgainst(t, context.Background(), srv.URL, nil)
			require.Equal(t, map[int]int{tc.status: 10}, res.Status, res.FirstError)
			require.Equal(t, 10, res.Answered)
			require.Zero(t, res.Errors)
			require.Len(t, res.All, 10)
			require.Zero(t, elsewhere.Load(), "redirects are not followed")
			if tc.status == 200 {
				require.Len(t, res.OK, 10)
			} else {
				require.Empty(t, res.OK)
			}
		})
	}
}

// rawServer answers every connection with answer (after reading the
// request's first bytes) and then closes it.
func rawServer(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = bufio.NewReader(c).Peek(16)
				answer(c)
			})
		}
	})
	return "http://" + l.Addr().String()
}

// TestRun_BadAnswers: what is not an HTTP answer within the timeout is an
// error, with its latency, never a status: garbage, a connection closed
// without an answer, a body over 64 KiB, and no answer in time.
func TestRun_BadAnswers(t *testing.T) {
	big := "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("x", 70000)
	for name, tc := range map[string]struct {
		answer func(c net.Conn)
		want   string
	}{
		"Garbage":  {func(c net.Conn) { _, _ = io.WriteString(c, "HELLO THERE\r\n\r\n") }, "post:"},
		"Closed":   {func(c net.Conn) {}, "post:"},
		"TooLarge": {func(c net.Conn) { _, _ = io.WriteString(c, big) }, "body size exceeds"},
		"Slow":     {func(c net.Conn) { time.Sleep(time.Second) }, "timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			base := rawServer(t, tc.answer)
			res := runAgainst(t, context.Background(), base, func(c *loadgen.Config) { c.Timeout = 200 * time.Millisecond })
			require.Zero(t, res.Answered, "%v", res.Status)
			require.Equal(t, 10, res.Errors)
			require.Equal(t, 10, res.Sent)
			require.Equal(t, uint64(10), res.Latency.Count())
			require.Empty(t, res.OK)
			require.Len(t, res.All, 10, "every callback sent is known")
			require.Contains(t, res.FirstError, tc.want)
		})
	}
}

// TestRun_ConnsCap: the server never sees more connections than Conns,
// however many callbacks are sent, and the connections are kept alive.
func TestRun_ConnsCap(t *testing.T) {
	var open, peak, total atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "success")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			total.Add(1)
			n := open.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	res := runAgainst(t, context.Background(), srv.URL, func(c *loadgen.Config) { c.Conns = 3; c.N = 300 })
	require.Equal(t, map[int]int{200: 300}, res.Status, res.FirstError)
	assert.LessOrEqual(t, peak.Load(), int64(3))
	assert.LessOrEqual(t, total.Load(), int64(3), "connections are reused")
}

// TestRun_CancelEndsRequestsInFlight: when the caller's ctx ends, requests
// waiting for an answer fail then, not when their timeout would.
func TestRun_CancelEndsRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		res *loadgen.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		v := testvectors.V1
		res, err := loadgen.Run(ctx, loadgen.Config{URL: srv.URL + "/callback/archive", Token: v.Token,
			EncodingAESKey: v.EncodingAESKey, ReceiveID: v.ReceiveID, Conns: 2, N: 2, Timeout: time.Hour})
		done <- outcome{res, err}
	}()
	natstest.WaitFor(t, 10*time.Second, func() error {
		if arrived.Load() < 2 {
			return io.ErrNoProgress
		}
		return nil
	})
	cancel()
	select {
	case o := <-done:
		require.NoError(t, o.err)
		require.Equal(t, 2, o.res.Errors)
		require.Zero(t, o.res.Answered)
	case <-time.After(30 * time.Second):
		t.Fatal("Run still waiting for answers 30 s after its ctx ended (timeout: an hour)")
	}
}

// TestVerify_CatchesUnstored: a receiver that answers 200 without storing
// some callbacks is caught: exactly those are reported missing, and the
// check fails with ErrLost.
func TestVerify_CatchesUnstored(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	r := receiver(t, js)
	// Every callback whose nonce (its sequence number) ends in 3 is
	// answered success and dropped.
	var dropped atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Query().Get("nonce"), "3") {
			dropped.Add(1)
			_, _ = io.WriteString(w, "success")
			return
		}
		r.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	from, err := loadgen.NextSeq(context.Background(), js, intake.StreamName)
	require.NoError(t, err)
	res := runAgainst(t, context.Background(), srv.URL, func(c *loadgen.Config) { c.N = 40; c.Conns = 4 })
	require.Equal(t, map[int]int{200: 40}, res.Status, res.FirstError)
	require.Equal(t, int64(4), dropped.Load())
	chk, err := loadgen.Verify(context.Background(), js, intake.StreamName, from, res)
	require.ErrorIs(t, err, loadgen.ErrLost)
	require.Len(t, chk.Missing, 4)
	require.Equal(t, 36, chk.Stored)
	require.Zero(t, chk.Unconfirmed)
}
