package callback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// memSink records what the handler stores; the NATS-backed sink is tested
// end to end in internal/app.
type memSink struct {
	mu   sync.Mutex
	recs []wecomhit.Callback
	err  error
}

func (s *memSink) Store(_ context.Context, cb *wecomhit.Callback) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.recs = append(s.recs, *cb)
	return nil
}

func (s *memSink) records() []wecomhit.Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wecomhit.Callback(nil), s.recs...)
}

type fixture struct {
	srv  *httptest.Server
	sink Sink
	logs *testlog.Buffer
	c    *crypto.Crypter
}

func newFixture(t *testing.T, sink Sink, opts ...Option) *fixture {
	t.Helper()
	c1, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	c2, err := crypto.New(testvectors.V2.Token, testvectors.V2.EncodingAESKey, testvectors.V2.ReceiveID)
	require.NoError(t, err)
	logs := &testlog.Buffer{}
	h, err := New([]App{{Name: "v1", Crypter: c1}, {Name: "v2", Crypter: c2}}, sink, append([]Option{WithLogger(zerolog.New(logs))}, opts...)...)
	require.NoError(t, err)
	r := chi.NewRouter()
	h.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, sink: sink, logs: logs, c: c1}
}

func (f *fixture) url(app string, q url.Values) string {
	return f.srv.URL + "/callback/" + app + "?" + q.Encode()
}

func do(t *testing.T, method, u, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func TestHandler_OfficialVectors(t *testing.T) {
	sink := &memSink{}
	f := newFixture(t, sink, WithTimestampWindow(0))
	apps := map[testvectors.App]string{testvectors.V1: "v1", testvectors.V2: "v2"}
	for _, v := range testvectors.All() {
		t.Run(v.Name, func(t *testing.T) {
			q := callbacktest.Query(v.Signature, v.Timestamp, v.Nonce)
			switch v.Format {
			case "get":
				q.Set("echostr", v.Encrypt)
				status, body, hdr := do(t, http.MethodGet, f.url(apps[v.App], q), "")
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, v.Plaintext, body, "exactly the plaintext, no newline")
				assert.Equal(t, "text/plain; charset=utf-8", hdr.Get("Content-Type"))
			case "xml", "json":
				env := callbacktest.XMLEnvelope(v.Encrypt)
				if v.Format == "json" {
					env = `{"tousername":"` + v.App.ReceiveID + `","encrypt":"` + v.Encrypt + `","agentid":218}`
				}
				status, body, _ := do(t, http.MethodPost, f.url(apps[v.App], q), env)
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, "success", body)
				recs := sink.records()
				require.NotEmpty(t, recs)
				last := recs[len(recs)-1]
				assert.Equal(t, v.Plaintext, last.Raw)
				assert.Equal(t, wecomhit.KindUnknown, last.Kind, "a text message is kept as unknown")
				assert.Equal(t, v.Format, last.Format)
			}
		})
	}
}

func sealHit(t *testing.T, c *crypto.Crypter, ts string) (q url.Values, body, encrypt string) {
	t.Helper()
	enc, sig, err := c.Seal(callbacktest.HitKeywordXML, ts, "1372623149")
	require.NoError(t, err)
	return callbacktest.Query(sig, ts, "1372623149"), callbacktest.XMLEnvelope(enc), enc
}

func TestHandler_HitKeyword(t *testing.T) {
	sink := &memSink{}
	now := time.Unix(1717000030, 0)
	f := newFixture(t, sink, WithClock(func() time.Time { return now }))
	q, body, enc := sealHit(t, f.c, "1717000010")

	status, resp, hdr := do(t, http.MethodPost, f.url("v1", q), body)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "success", resp)
	assert.Equal(t, "text/plain; charset=utf-8", hdr.Get("Content-Type"))

	recs := sink.records()
	require.Len(t, recs, 1)
	assert.Equal(t, wecomhit.Callback{
		ID: CallbackID("v1", enc), App: "v1", Kind: wecomhit.KindHitKeyword, Format: FormatXML,
		CorpID: "wwCorpABC123", SuiteID: "wwArchiveSuite01", Token: callbacktest.HitToken,
		EventTime: 1717000000, ReceivedAt: now.UTC(), Raw: callbacktest.HitKeywordXML,
	}, recs[0])

	// A retry of the same delivery carries the same id.
	status, _, _ = do(t, http.MethodPost, f.url("v1", q), body)
	require.Equal(t, http.StatusOK, status)
	recs = sink.records()
	require.Len(t, recs, 2)
	assert.Equal(t, recs[0].ID, recs[1].ID)

	logs := f.logs.String()
	assert.Contains(t, logs, `"kind":"hit_keyword"`)
	assert.Contains(t, logs, `"outcome":"accepted"`)
	assert.NotContains(t, logs, "tkn-7f3a")
}

func TestCallbackID(t *testing.T) {
	a := CallbackID("app", "payload")
	assert.Len(t, a, 32)
	assert.Equal(t, a, CallbackID("app", "payload"))
	assert.NotEqual(t, a, CallbackID("app2", "payload"))
	assert.NotEqual(t, a, CallbackID("app", "payload2"))
	assert.NotEqual(t, CallbackID("ab", "c"), CallbackID("a", "bc"), "the separator keeps app and payload apart")
	key := CallbackKey("app", "payload")
	assert.Equal(t, a, hex.EncodeToString(key[:]), "the key is the bytes the id spells")
	sum := sha256.Sum256([]byte("app\x00payload"))
	assert.Equal(t, sum[:16], key[:], "SHA-256 of app, a zero byte and the payload, first 128 bits")
}

func TestHandler_SinkFailures(t *testing.T) {
	t.Run("ErrStore", func(t *testing.T) {
		sink := &memSink{err: errors.New("nats: no responders available for request")}
		f := newFixture(t, sink, WithTimestampWindow(0))
		q, body, _ := sealHit(t, f.c, "1717000010")
		status, resp, _ := do(t, http.MethodPost, f.url("v1", q), body)
		assert.Equal(t, http.StatusServiceUnavailable, status)
		assert.Equal(t, "503 store_failed\n", resp)
		assert.Contains(t, f.logs.String(), `"outcome":"unavailable"`)
	})
	t.Run("ErrStoreFull", func(t *testing.T) {
		// Intake's full-store error, recognised by its StoreFull method
		// however deeply wrapped.
		sink := &memSink{err: fmt.Errorf("intake: store callback: %w: %w", intake.ErrStoreFull,
			errors.New("nats: API error: code=503 err_code=10077 description=maximum bytes exceeded"))}
		f := newFixture(t, sink, WithTimestampWindow(0))
		q, body, _ := sealHit(t, f.c, "1717000010")
		status, resp, _ := do(t, http.MethodPost, f.url("v1", q), body)
		assert.Equal(t, http.StatusServiceUnavailable, status)
		assert.Equal(t, "503 store_full\n", resp)
		assert.Contains(t, f.logs.String(), `"reason":"store_full"`)
	})
	t.Run("ErrTimeout", func(t *testing.T) {
		// The sink never acks: the handler must give up at the ack timeout
		// and answer 503 so that WeCom retries.
		sink := SinkFunc(func(ctx context.Context, _ *wecomhit.Callback) error {
			<-ctx.Done()
			return ctx.Err()
		})
		f := newFixture(t, sink, WithTimestampWindow(0), WithAckTimeout(50*time.Millisecond))
		q, body, _ := sealHit(t, f.c, "1717000010")
		status, resp, _ := do(t, http.MethodPost, f.url("v1", q), body)
		assert.Equal(t, http.StatusServiceUnavailable, status)
		assert.Equal(t, "503 store_timeout\n", resp)
	})
}

// TestHandler_SinkFailureLog: the line of a callback that could not be
// stored is a warning that still names the callback, so an operator can
// find it in WeCom's retries and in the stream once stored.
func TestHandler_SinkFailureLog(t *testing.T) {
	sink := &memSink{err: errors.New("nats: no responders available for request")}
	f := newFixture(t, sink, WithTimestampWindow(0))
	q, body, enc := sealHit(t, f.c, "1717000010")
	status, _, _ := do(t, http.MethodPost, f.url("v1", q), body)
	require.Equal(t, http.StatusServiceUnavailable, status)

	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.logs.String()), &line), f.logs.String())
	assert.Equal(t, "warn", line["level"])
	assert.Equal(t, OutcomeUnavailable, line["outcome"])
	assert.Equal(t, "store_failed", line["reason"])
	assert.Equal(t, "v1", line["app"])
	assert.Equal(t, string(wecomhit.KindHitKeyword), line["kind"])
	assert.Equal(t, CallbackID("v1", enc), line["callback_id"])
}

// TestHandler_BadInput covers every refusal: its status, that nothing
// reached the sink, and that the log line names the reason but no secret.
func TestHandler_BadInput(t *testing.T) {
	now := time.Unix(1717000030, 0)
	for _, tt := range callbacktest.Bad(t, "v1", "v2", now) {
		t.Run(tt.Name, func(t *testing.T) {
			sink := &memSink{}
			f := newFixture(t, sink, WithClock(func() time.Time { return now }), WithMaxBodyBytes(1024))
			status, body, _ := do(t, tt.Method, f.url(tt.App, tt.Query), tt.Body)
			assert.Equal(t, tt.Status, status)
			assert.Equal(t, strconv.Itoa(tt.Status)+" "+tt.Reason+"\n", body)
			assert.Empty(t, sink.records(), "nothing stored")
			logs := f.logs.String()
			assert.Contains(t, logs, `"reason":"`+tt.Reason+`"`)
			for _, s := range callbacktest.Secrets() {
				assert.NotContains(t, logs, s)
			}
		})
	}
}

func TestHandler_OversizedChunkedBody(t *testing.T) {
	sink := &memSink{}
	f := newFixture(t, sink, WithTimestampWindow(0), WithMaxBodyBytes(1024))
	v := testvectors.All()[1]
	pr, pw := io.Pipe()
	go func() {
		// Unknown length: the handler must stop at the limit, not read on.
		_, _ = pw.Write([]byte(callbacktest.XMLEnvelope(v.Encrypt) + strings.Repeat(" ", 4096)))
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, f.url("v1", callbacktest.Query(v.Signature, v.Timestamp, v.Nonce)), pr)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Empty(t, sink.records())
}

func TestHandler_EchostrPlusAsSpace(t *testing.T) {
	f := newFixture(t, &memSink{}, WithTimestampWindow(0))
	v := testvectors.All()[0]
	require.Contains(t, v.Encrypt, "+")
	// Send the echostr with raw '+', which query decoding turns into spaces.
	u := f.srv.URL + "/callback/v1?msg_signature=" + v.Signature + "&timestamp=" + v.Timestamp + "&nonce=" + v.Nonce + "&echostr=" + v.Encrypt
	status, body, _ := do(t, http.MethodGet, u, "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, v.Plaintext, body)
}

func TestHandler_MethodNotAllowed(t *testing.T) {
	f := newFixture(t, &memSink{})
	status, _, _ := do(t, http.MethodPut, f.srv.URL+"/callback/v1", "x")
	assert.Equal(t, http.StatusMethodNotAllowed, status)
}

func TestNew_Options(t *testing.T) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	apps := []App{{Name: "a", Crypter: c}}
	for name, tc := range map[string]struct {
		apps []App
		sink Sink
		opts []Option
	}{
		"ErrNoSink":         {apps, nil, nil},
		"ErrDuplicateApp":   {append(apps, apps[0]), &memSink{}, nil},
		"ErrNoCrypter":      {[]App{{Name: "a"}}, &memSink{}, nil},
		"ErrMaxBody":        {apps, &memSink{}, []Option{WithMaxBodyBytes(-1)}},
		"ErrAckTimeout":     {apps, &memSink{}, []Option{WithAckTimeout(-time.Second)}},
		"ErrNegativeWindow": {apps, &memSink{}, []Option{WithTimestampWindow(-time.Second)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.apps, tc.sink, tc.opts...)
			assert.ErrorIs(t, err, ErrInvalidOption)
		})
	}
}

// TestNew_ZeroKeepsDefaults: a zero limit means the default, as it does
// in the configuration; it is not refused and does not lift the limit.
func TestNew_ZeroKeepsDefaults(t *testing.T) {
	sink := &memSink{}
	f := newFixture(t, sink, WithTimestampWindow(0), WithMaxBodyBytes(0), WithAckTimeout(0))
	q, body, _ := sealHit(t, f.c, "1717000010")
	status, _, _ := do(t, http.MethodPost, f.url("v1", q), body)
	assert.Equal(t, http.StatusOK, status)
	status, _, _ = do(t, http.MethodPost, f.url("v1", q), strings.Repeat("x", DefaultMaxBodyBytes+1))
	assert.Equal(t, http.StatusRequestEntityTooLarge, status, "the default cap holds")
}

// TestHandler_CreateAuth: the auth code reaches the record, and never the
// log, where anyone could exchange it before the receiver does.
func TestHandler_CreateAuth(t *testing.T) {
	sink := &memSink{}
	now := time.Unix(1717000030, 0)
	f := newFixture(t, sink, WithClock(func() time.Time { return now }))
	const code = "auth-code-3f9b0c"
	plain := `<xml><SuiteId><![CDATA[wwArchiveSuite01]]></SuiteId><AuthCode><![CDATA[` + code +
		`]]></AuthCode><InfoType><![CDATA[create_auth]]></InfoType><TimeStamp>1717000010</TimeStamp><State><![CDATA[]]></State></xml>`
	enc, sig, err := f.c.Seal(plain, "1717000010", "1372623149")
	require.NoError(t, err)

	status, resp, _ := do(t, http.MethodPost, f.url("v1", callbacktest.Query(sig, "1717000010", "1372623149")), callbacktest.XMLEnvelope(enc))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "success", resp)
	recs := sink.records()
	require.Len(t, recs, 1)
	assert.Equal(t, wecomhit.KindCreateAuth, recs[0].Kind)
	assert.Equal(t, code, recs[0].AuthCode)
	assert.Empty(t, recs[0].CorpID, "create_auth names no corp")
	assert.Equal(t, "wwArchiveSuite01", recs[0].SuiteID)
	logs := f.logs.String()
	assert.Contains(t, logs, `"kind":"create_auth"`)
	assert.NotContains(t, logs, code)
}

// TestHandler_AcceptedLogLimit: past the limit in one second of the clock,
// accepted callbacks are not logged but counted on the next line written;
// every refusal and failure is logged whatever the limit.
func TestHandler_AcceptedLogLimit(t *testing.T) {
	sink := &memSink{}
	var mu sync.Mutex
	now := time.Unix(1717000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixture(t, sink, WithTimestampWindow(0), WithAcceptedLogLimit(2), WithClock(clock))
	v := testvectors.All()[0]
	for _, tv := range testvectors.All() {
		if tv.Format == "xml" && tv.App == testvectors.V1 {
			v = tv
		}
	}
	q := callbacktest.Query(v.Signature, v.Timestamp, v.Nonce)
	accept := func() {
		t.Helper()
		status, _, _ := do(t, http.MethodPost, f.url("v1", q), callbacktest.XMLEnvelope(v.Encrypt))
		require.Equal(t, http.StatusOK, status)
	}
	refuse := func() {
		t.Helper()
		status, _, _ := do(t, http.MethodPost, f.url("v1", q), "<xml><Encrypt>AAAA</Encrypt></xml>")
		require.Equal(t, http.StatusForbidden, status)
	}
	for range 5 {
		accept()
		refuse()
	}
	sink.err = errors.New("nats down")
	status, _, _ := do(t, http.MethodPost, f.url("v1", q), callbacktest.XMLEnvelope(v.Encrypt))
	require.Equal(t, http.StatusServiceUnavailable, status)
	sink.err = nil

	lines := func() (accepted, refused, failed int, unlogged []int64) {
		for line := range strings.Lines(f.logs.String()) {
			var l struct {
				Outcome  string `json:"outcome"`
				Unlogged int64  `json:"unlogged"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &l), line)
			switch l.Outcome {
			case OutcomeAccepted:
				accepted++
				unlogged = append(unlogged, l.Unlogged)
			case OutcomeRejected:
				refused++
			case OutcomeUnavailable:
				failed++
			}
		}
		return
	}
	accepted, refused, failed, unlogged := lines()
	assert.Equal(t, 2, accepted, "two accepted lines in the second")
	assert.Equal(t, []int64{0, 0}, unlogged)
	assert.Equal(t, 5, refused, "every refusal logged")
	assert.Equal(t, 1, failed, "every failure logged")

	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	accept()
	accepted, _, _, unlogged = lines()
	assert.Equal(t, 3, accepted)
	assert.Equal(t, int64(3), unlogged[2], "the next second's first line counts the three left out")
}

func TestLineLimit_Unlimited(t *testing.T) {
	var l lineLimit
	for range 100 {
		ok, held := l.allow(time.Unix(1, 0))
		require.True(t, ok)
		require.Zero(t, held)
	}
}

// TestReceive_KeepsNothingOfRequest: a transport may hand Receive views of
// buffers it reuses for the next request (the fasthttp edge does). Once
// Receive has returned, overwriting every byte of the request changes
// nothing of the record the Sink was given, for XML and JSON
// envelopes and events.
func TestReceive_KeepsNothingOfRequest(t *testing.T) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	// A copy of the struct, as the Sink's contract asks; its strings are
	// the handler's, and are what this test checks.
	var kept *wecomhit.Callback
	sink := SinkFunc(func(_ context.Context, cb *wecomhit.Callback) error { c := *cb; kept = &c; return nil })
	h, err := New([]App{{Name: "v1", Crypter: c}}, sink, WithTimestampWindow(0))
	require.NoError(t, err)

	for name, tc := range map[string]struct{ plain, env string }{
		"XML":  {callbacktest.HitKeywordXML, "xml"},
		"JSON": {`{"SuiteId":"wwSuite","AuthCorpId":"wwCorp","InfoType":"hit_keyword","Token":"tkn-1","TimeStamp":1717000000}`, "json"},
	} {
		t.Run(name, func(t *testing.T) {
			enc, sig, err := c.Seal(tc.plain, "1717000000", "1372623149")
			require.NoError(t, err)
			body := callbacktest.XMLEnvelope(enc)
			if tc.env == "json" {
				body = callbacktest.JSONEnvelope(testvectors.V1.ReceiveID, enc)
			}
			// One buffer holds every string of the request, as a
			// transport's connection buffer would.
			buf := []byte("v1" + sig + "1717000000" + "1372623149" + "req-1" + body)
			at := 0
			next := func(n int) string {
				s := unsafeView(buf[at : at+n])
				at += n
				return s
			}
			req := Request{App: next(2), Signature: next(len(sig)), Timestamp: next(10), Nonce: next(10), RequestID: next(5)}
			b := next(len(body))
			req.ContentLength = int64(len(b))
			req.ReadBody = func() (string, error) { return b, nil }

			kept = nil
			ans := h.Receive(context.Background(), &req)
			require.Equal(t, accepted, ans)
			require.NotNil(t, kept)
			want, err := json.Marshal(kept) // a deep copy
			require.NoError(t, err)
			for i := range buf {
				buf[i] = 'X'
			}
			got, err := json.Marshal(kept)
			require.NoError(t, err)
			assert.JSONEq(t, string(want), string(got), "the record shares no memory with the request")
			assert.Equal(t, "v1", kept.App)
			assert.Equal(t, wecomhit.KindHitKeyword, kept.Kind)
			assert.Equal(t, tc.plain, kept.Raw)
		})
	}
}
