package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/admin"
	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// edgePair serves one callback handler twice over real HTTP: on net/http
// with chi, as the callback listener was served before fasthttp, and on
// the fasthttp server the service uses now. Every answer of the second
// must equal the first's.
type edgePair struct {
	netAddr, fastAddr string
	netLogs, fastLogs *testlog.Buffer
}

func newEdgePair(t *testing.T, sink callback.Sink, opts ...callback.Option) *edgePair {
	t.Helper()
	c1, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	c2, err := crypto.New(testvectors.V2.Token, testvectors.V2.EncodingAESKey, testvectors.V2.ReceiveID)
	require.NoError(t, err)
	p := &edgePair{netLogs: &testlog.Buffer{}, fastLogs: &testlog.Buffer{}}
	serve := func(logs *testlog.Buffer) (*callback.Handler, http.Handler, *Main) {
		log := zerolog.New(logs)
		h, err := callback.New([]callback.App{{Name: "v1", Crypter: c1}, {Name: "v2", Crypter: c2}}, sink,
			append([]callback.Option{callback.WithLogger(log), callback.WithMaxBodyBytes(1024)}, opts...)...)
		require.NoError(t, err)
		// The service's own routes (Main.routes): the callback endpoint
		// and the probes, behind the request id and the recoverer.
		m := &Main{log: log}
		m.adminHandler, err = admin.New(admin.CheckerFunc(func(context.Context) error { return nil }), prometheus.NewRegistry())
		require.NoError(t, err)
		return h, m.routes(h), m
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return l
	}

	_, router, m := serve(p.netLogs)
	netLis := listen()
	ns := newServer("callback", router, m.log, 10*time.Second, 30*time.Second)
	go func() { _ = ns.Serve(netLis) }()
	t.Cleanup(func() { _ = ns.Close() })

	h, router, m := serve(p.fastLogs)
	fastLis := listen()
	fs := newCallbackServer(h, router, m.log, 30*time.Second)
	served := make(chan struct{})
	go func() { defer close(served); _ = fs.Serve(fastLis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, fs.ShutdownWithContext(ctx))
		<-served
	})
	p.netAddr, p.fastAddr = netLis.Addr().String(), fastLis.Addr().String()
	return p
}

// answer is a response as the client saw it, but for the Date header and
// a server-made request id.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

var serverMadeID = regexp.MustCompile(`^[A-Za-z0-9]{22}$`)

// raw sends a request written byte for byte on a new connection and reads
// the answer; the connection is closed after.
func raw(t *testing.T, addr, request string) answer {
	t.Helper()
	a, err := rawAnswer(addr, request)
	require.NoError(t, err)
	return a
}

func rawAnswer(addr, request string) (answer, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return answer{}, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return answer{}, err
	}
	// A server may answer before it has read the whole request (413,
	// 431) and close: a failed write is not the test's concern.
	go func() { _, _ = io.WriteString(c, request) }()
	method, _, _ := strings.Cut(request, " ") // a HEAD's answer has no body
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	resp.Header.Del("Date")
	if serverMadeID.MatchString(resp.Header.Get("X-Request-Id")) {
		resp.Header.Set("X-Request-Id", "(server-made)")
	}
	// chi lists the allowed methods in map order.
	slices.Sort(resp.Header["Allow"])
	if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
		// net/http writes this refusal itself, without a length, and
		// closes; fasthttp states the length.
		resp.Header.Del("Content-Length")
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

func (p *edgePair) compare(t *testing.T, request string) answer {
	t.Helper()
	want := raw(t, p.netAddr, request)
	got := raw(t, p.fastAddr, request)
	assert.Equal(t, want, got, "fasthttp's answer differs from net/http's to\n%.300s", request)
	return got
}

func request(method, target, body string, header ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: receiver.example\r\n", method, target)
	for _, h := range header {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == http.MethodPost {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

func target(app string, q url.Values) string { return "/callback/" + app + "?" + q.Encode() }

type recSink struct {
	mu   sync.Mutex
	recs []wecomhit.Callback
}

func (s *recSink) Store(_ context.Context, cb *wecomhit.Callback) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, *cb)
	return nil
}

// TestCallbackEdge_SameAnswers: for every refusal of callbacktest.Bad,
// for an accepted callback, a URL verification, and the routes served
// through chi, the fasthttp listener answers what net/http did: status,
// headers and body.
func TestCallbackEdge_SameAnswers(t *testing.T) {
	now := time.Unix(1717000030, 0)
	sink := &recSink{}
	p := newEdgePair(t, sink, callback.WithClock(func() time.Time { return now }))

	for _, tt := range callbacktest.Bad(t, "v1", "v2", now) {
		t.Run(tt.Name, func(t *testing.T) {
			got := p.compare(t, request(tt.Method, target(tt.App, tt.Query), tt.Body))
			assert.Equal(t, tt.Status, got.Status)
		})
	}

	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	q, enc := callbacktest.Seal(t, c, callbacktest.HitKeywordXML, "1717000010")
	post := request(http.MethodPost, target("v1", q), callbacktest.XMLEnvelope(enc))
	for name, tc := range map[string]struct {
		request string
		status  int
	}{
		"Accepted":                 {post, http.StatusOK},
		"AcceptedWithRequestID":    {request(http.MethodPost, target("v1", q), callbacktest.XMLEnvelope(enc), "X-Request-Id: proxy-1.a_B"), http.StatusOK},
		"RequestIDNotPlain":        {request(http.MethodPost, target("v1", q), callbacktest.XMLEnvelope(enc), `X-Request-Id: a"b`), http.StatusOK},
		"OversizedByLength":        {request(http.MethodPost, target("v1", q), strings.Repeat("x", 4096)), http.StatusRequestEntityTooLarge},
		"OversizedUnknownApp":      {request(http.MethodPost, target("nope", q), strings.Repeat("x", 4096)), http.StatusNotFound},
		"OversizedChunked":         {"POST " + target("v1", q) + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("x", 4096) + "\r\n0\r\n\r\n", http.StatusRequestEntityTooLarge},
		"MethodNotAllowed":         {request(http.MethodPut, target("v1", q), "x"), http.StatusMethodNotAllowed},
		"Head":                     {request(http.MethodHead, target("v1", q), ""), http.StatusMethodNotAllowed},
		"NotFound":                 {request(http.MethodGet, "/nope", ""), http.StatusNotFound},
		"NoApp":                    {request(http.MethodPost, "/callback/", "x"), http.StatusNotFound},
		"ExtraSegment":             {request(http.MethodPost, "/callback/v1/x", "x"), http.StatusNotFound},
		"EscapedApp":               {request(http.MethodPost, "/callback/v%31?"+q.Encode(), callbacktest.XMLEnvelope(enc)), http.StatusNotFound},
		"Healthz":                  {request(http.MethodGet, "/healthz", ""), http.StatusOK},
		"HeaderTooLarge":           {request(http.MethodGet, "/healthz", "", "X-Big: "+strings.Repeat("a", 64<<10)), http.StatusRequestHeaderFieldsTooLarge},
		"HeaderLargeButUnderLimit": {request(http.MethodGet, "/healthz", "", "X-Big: "+strings.Repeat("a", 15<<10)), http.StatusOK},
	} {
		t.Run(name, func(t *testing.T) {
			got := p.compare(t, tc.request)
			assert.Equal(t, tc.status, got.Status)
		})
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	assert.Len(t, sink.recs, 6, "each accepted POST stored, on each server")
}

// TestCallbackEdge_OfficialVectors: WeCom's own vectors (URL verification
// with a raw '+' in echostr, XML and JSON posts) get the same answers.
func TestCallbackEdge_OfficialVectors(t *testing.T) {
	sink := &recSink{}
	p := newEdgePair(t, sink, callback.WithTimestampWindow(0))
	apps := map[testvectors.App]string{testvectors.V1: "v1", testvectors.V2: "v2"}
	posts := 0
	for _, v := range testvectors.All() {
		t.Run(v.Name, func(t *testing.T) {
			q := "?msg_signature=" + v.Signature + "&timestamp=" + v.Timestamp + "&nonce=" + v.Nonce
			var got answer
			switch v.Format {
			case "get":
				require.Contains(t, v.Encrypt, "+")
				// Unescaped: query decoding makes the '+' a space.
				got = p.compare(t, request(http.MethodGet, "/callback/"+apps[v.App]+q+"&echostr="+v.Encrypt, ""))
				assert.Equal(t, v.Plaintext, got.Body)
			case "xml", "json":
				env := callbacktest.XMLEnvelope(v.Encrypt)
				if v.Format == "json" {
					env = callbacktest.JSONEnvelope(v.App.ReceiveID, v.Encrypt)
				}
				got = p.compare(t, request(http.MethodPost, "/callback/"+apps[v.App]+q, env))
				assert.Equal(t, "success", got.Body)
				posts++
			}
			assert.Equal(t, http.StatusOK, got.Status)
		})
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	assert.Len(t, sink.recs, 2*posts, "each post stored, on each server")
}

// TestCallbackEdge_Panic: a panic in the callback handler is answered 500
// and logged with the request id, as the recoverer middleware does on
// net/http; fasthttp alone would let it end the process.
func TestCallbackEdge_Panic(t *testing.T) {
	now := time.Unix(1717000030, 0)
	p := newEdgePair(t, callback.SinkFunc(func(context.Context, *wecomhit.Callback) error { panic("sink bug") }),
		callback.WithClock(func() time.Time { return now }))
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	q, enc := callbacktest.Seal(t, c, callbacktest.HitKeywordXML, "1717000010")
	got := p.compare(t, request(http.MethodPost, target("v1", q), callbacktest.XMLEnvelope(enc), "X-Request-Id: req-42"))
	assert.Equal(t, http.StatusInternalServerError, got.Status)
	assert.Equal(t, "500 internal\n", got.Body)
	for _, logs := range []*testlog.Buffer{p.netLogs, p.fastLogs} {
		assert.Contains(t, logs.String(), `"request_id":"req-42","panic":"sink bug","message":"handler panicked"`)
	}
	// The server still serves.
	got = p.compare(t, request(http.MethodGet, "/healthz", ""))
	assert.Equal(t, http.StatusOK, got.Status)
}

// TestCallbackEdge_ShutdownFinishesInFlight: a callback being stored when
// shutdown begins is stored and answered "success", its context intact
// (fasthttp's request context ends at shutdown; the store's must not),
// and shutdown waits for it; new connections are refused meanwhile.
func TestCallbackEdge_ShutdownFinishesInFlight(t *testing.T) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	storeErr := make(chan error, 1)
	sink := callback.SinkFunc(func(ctx context.Context, _ *wecomhit.Callback) error {
		close(entered)
		<-release
		storeErr <- ctx.Err()
		return ctx.Err()
	})
	h, err := callback.New([]callback.App{{Name: "v1", Crypter: c}}, sink, callback.WithAckTimeout(time.Minute))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fs := newCallbackServer(h, http.NotFoundHandler(), zerolog.Nop(), 30*time.Second)
	served := make(chan struct{})
	go func() { defer close(served); _ = fs.Serve(lis) }()

	q, enc := callbacktest.Seal(t, c, callbacktest.HitKeywordXML, fmt.Sprint(time.Now().Unix()))
	answered := make(chan answer, 1)
	go func() {
		a, err := rawAnswer(lis.Addr().String(), request(http.MethodPost, target("v1", q), callbacktest.XMLEnvelope(enc)))
		if err != nil {
			a.Body = err.Error()
		}
		answered <- a
	}()
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- fs.ShutdownWithContext(ctx)
	}()
	natstest.WaitFor(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err == nil {
			c.Close()
			return errors.New("still accepting")
		}
		return nil
	})
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned with a callback in flight: %v", err)
	default:
	}
	close(release)
	got := <-answered
	assert.Equal(t, http.StatusOK, got.Status)
	assert.Equal(t, "success", got.Body)
	assert.NoError(t, <-storeErr, "the store's context outlives the shutdown")
	require.NoError(t, <-shut)
	<-served
}

// TestCallbackEdge_ReusedRequestState: callbacks of different sizes, with
// and without a declared length, over one keep-alive connection and over
// several at once, are each stored as sent: the edge reuses its request
// state and body buffers from one request to the next, and no record may
// share memory with them.
func TestCallbackEdge_ReusedRequestState(t *testing.T) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	sink := &recSink{}
	h, err := callback.New([]callback.App{{Name: "v1", Crypter: c}}, sink,
		callback.WithTimestampWindow(0), callback.WithMaxBodyBytes(64<<10))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fs := newCallbackServer(h, http.NotFoundHandler(), zerolog.Nop(), 30*time.Second)
	served := make(chan struct{})
	go func() { defer close(served); _ = fs.Serve(lis) }()
	t.Cleanup(func() {
		assert.NoError(t, fs.Shutdown())
		<-served
	})

	// Sizes around the pooled buffer's bound, up and down again.
	sizes := []int{10, 3000, 200, 20 << 10, 50, 9000, 0, 30 << 10, 100}
	plain := func(conn, i int) string {
		return strings.Replace(callbacktest.HitKeywordXML, callbacktest.HitToken,
			fmt.Sprintf("tkn-%d-%d-%s", conn, i, strings.Repeat("z", sizes[i%len(sizes)])), 1)
	}
	const conns, perConn = 4, 2 * 9
	var mu sync.Mutex
	ids := map[string]string{} // plaintext to record id
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			for i := range perConn {
				enc, sig, err := c.Seal(plain(k, i), "1717000000", "n1")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids[plain(k, i)] = callback.CallbackID("v1", enc)
				mu.Unlock()
				body := callbacktest.XMLEnvelope(enc)
				head := "POST " + target("v1", callbacktest.Query(sig, "1717000000", "n1")) + " HTTP/1.1\r\nHost: x\r\n"
				if i%2 == 0 {
					_, err = io.WriteString(nc, head+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))+body)
				} else { // chunked: no declared length
					_, err = io.WriteString(nc, head+fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body))
				}
				if err != nil {
					errs <- err
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != "success" {
					errs <- fmt.Errorf("conn %d request %d: %d %q", k, i, resp.StatusCode, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	sink.mu.Lock()
	defer sink.mu.Unlock()
	got := map[string]bool{}
	for _, r := range sink.recs {
		assert.Equal(t, "v1", r.App)
		assert.Equal(t, wecomhit.KindHitKeyword, r.Kind)
		assert.Equal(t, ids[r.Raw], r.ID)
		got[r.Raw] = true
	}
	for k := range conns {
		for i := range perConn {
			assert.True(t, got[plain(k, i)], "conn %d request %d stored as sent", k, i)
		}
	}
	assert.Len(t, sink.recs, conns*perConn)
}

// TestRequestIDs: server-made ids have nuid's form, and none repeats,
// within a generator or across two (two processes).
func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	for _, g := range []*requestIDs{newRequestIDs(), newRequestIDs()} {
		var id [requestIDLen]byte
		for range 10000 {
			g.next(&id)
			s := string(id[:])
			require.Regexp(t, serverMadeID, s)
			require.False(t, seen[s], "repeated id %s", s)
			seen[s] = true
		}
	}
}

// TestCallbackEdge_Unreadable: a request fasthttp cannot parse gets
// net/http's 400 answer text (serveError), not fasthttp's own.
func TestCallbackEdge_Unreadable(t *testing.T) {
	p := newEdgePair(t, &recSink{})
	for _, req := range []string{"NOT A REQUEST\r\n\r\n", "POST /callback/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n"} {
		got := raw(t, p.fastAddr, req)
		assert.Equal(t, http.StatusBadRequest, got.Status, "%q", req)
		assert.Equal(t, "400 Bad Request", got.Body, "%q", req)
	}
}
