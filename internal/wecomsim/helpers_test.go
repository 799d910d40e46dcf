package wecomsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/wxml"
)

const (
	testSuite  = "wwSuiteTest01"
	testCorp   = "wwCorpTestA"
	testZone   = "wwZoneCorp01"
	testToken  = "QDG6eK"
	testKey    = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	testProg   = "prog-1"
	testSecret = "suite-secret"
	testPerm   = "perm-code"
	testZoneSc = "zone-secret"
)

func testStart() time.Time { return time.Date(2024, 6, 1, 8, 0, 0, 0, time.UTC) }

// newTestSim starts a simulator with a manual clock and no background
// traffic, on loopback, closed at cleanup. mutate adjusts the options.
func newTestSim(t testing.TB, mutate func(*Options)) *Sim {
	t.Helper()
	o := Options{
		Seed:        1,
		Start:       testStart(),
		MessageRate: -1,
		Archive: Archive{SuiteID: testSuite, SuiteSecret: testSecret,
			Corps: []Corp{{CorpID: testCorp, PermanentCode: testPerm}}, Token: testToken, EncodingAESKey: testKey},
		Zone: Zone{CorpID: testZone, CorpSecret: testZoneSc, ProgramID: testProg,
			Token: testToken, EncodingAESKey: testKey},
		CallbackRetryInterval: 5 * time.Millisecond,
		CallbackTimeout:       2 * time.Second,
	}
	if mutate != nil {
		mutate(&o)
	}
	s, err := New(o, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), "127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return s
}

type obj = map[string]any

// do sends a request and decodes the JSON answer.
func do(t testing.TB, method, u string, body any) obj {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, rd)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out obj
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// api POSTs body to path?access_token=token.
func api(t testing.TB, s *Sim, path, token string, body any) obj {
	t.Helper()
	return do(t, http.MethodPost, s.URL()+path+"?access_token="+url.QueryEscape(token), body)
}

func errcode(o obj) int {
	if v, ok := o["errcode"].(float64); ok {
		return int(v)
	}
	return 0
}

func corpToken(t testing.TB, s *Sim) string {
	t.Helper()
	st := do(t, http.MethodPost, s.URL()+"/cgi-bin/service/get_suite_token",
		obj{"suite_id": testSuite, "suite_secret": testSecret, "suite_ticket": s.SuiteTicket()})
	require.NotEmpty(t, st["suite_access_token"], st)
	ct := do(t, http.MethodPost, s.URL()+"/cgi-bin/service/get_corp_token?suite_access_token="+st["suite_access_token"].(string),
		obj{"auth_corpid": testCorp, "permanent_code": testPerm})
	require.NotEmpty(t, ct["access_token"], ct)
	return ct["access_token"].(string)
}

func zoneToken(t testing.TB, s *Sim) string {
	t.Helper()
	o := do(t, http.MethodGet, s.URL()+"/cgi-bin/gettoken?corpid="+testZone+"&corpsecret="+testZoneSc, nil)
	require.Equal(t, 0, errcode(o), o)
	return o["access_token"].(string)
}

func createRule(t testing.TB, s *Sim, token string, body obj) string {
	t.Helper()
	o := api(t, s, "/cgi-bin/chatdata/keyword/create_rule", token, body)
	require.Equal(t, 0, errcode(o), o)
	return o["rule_id"].(string)
}

// received is one callback delivery, decrypted.
type received struct {
	encrypt string
	fields  map[string]string
	to      string
}

// cbServer is a callback receiver that verifies and decrypts like ours.
type cbServer struct {
	t      testing.TB
	c      *crypto.Crypter
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	replyN func(n int) (int, string) // n-th request, from 1
}

var encryptRE = regexp.MustCompile(`<Encrypt><!\[CDATA\[([^\]]*)\]\]></Encrypt>`)

func newCBServer(t testing.TB, receiveID string, reply func(n int) (int, string)) *cbServer {
	t.Helper()
	c, err := crypto.New(testToken, testKey, receiveID)
	require.NoError(t, err)
	cb := &cbServer{t: t, c: c, replyN: reply}
	cb.srv = httptest.NewServer(http.HandlerFunc(cb.serve))
	t.Cleanup(cb.srv.Close)
	return cb
}

func (cb *cbServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	m := encryptRE.FindSubmatch(body)
	rec := received{fields: map[string]string{}}
	if m != nil {
		rec.encrypt = string(m[1])
		plain, err := cb.c.Open(q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), rec.encrypt)
		if err == nil {
			_ = wxml.Parse(plain, func(name, value string, _ bool) error {
				rec.fields[name] = value
				return nil
			})
		}
		_ = wxml.Parse(string(body), func(name, value string, _ bool) error {
			if name == "ToUserName" {
				rec.to = value
			}
			return nil
		})
	}
	cb.mu.Lock()
	cb.got = append(cb.got, rec)
	n := len(cb.got)
	cb.mu.Unlock()
	status, reply := http.StatusOK, "success"
	if cb.replyN != nil {
		status, reply = cb.replyN(n)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reply)
}

func (cb *cbServer) all() []received {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]received(nil), cb.got...)
}

// ofKind returns the deliveries whose InfoType or Event is kind.
func (cb *cbServer) ofKind(kind string) []received {
	var out []received
	for _, r := range cb.all() {
		if r.fields["InfoType"] == kind || r.fields["Event"] == kind {
			out = append(out, r)
		}
	}
	return out
}

func zeroLogger() zerolog.Logger { return zerolog.Nop() }
