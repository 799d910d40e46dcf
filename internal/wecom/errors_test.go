package wecom

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

const deletePath = "/cgi-bin/chatdata/keyword/delete_rule"

func TestAPIError_Is(t *testing.T) {
	err := error(&APIError{API: "x", Code: 45009, Msg: "freq"})
	assert.True(t, IsRateLimited(err))
	assert.ErrorIs(t, err, ErrRateLimited)
	assert.False(t, IsConcurrencyLimited(err))
	assert.False(t, IsRetryable(err))
	assert.True(t, IsConcurrencyLimited(&APIError{Code: 45033}))
	for _, code := range []int{40014, 42001, 42009, 40082} {
		assert.True(t, IsTokenInvalid(&APIError{Code: code}), code)
	}
	assert.False(t, IsTokenInvalid(&APIError{Code: 40001}))
	assert.True(t, IsRetryable(&APIError{Code: -1}))
	assert.True(t, IsRetryable(&StatusError{StatusCode: 502}))
	assert.False(t, IsRetryable(&StatusError{StatusCode: 404}))
	// Decided by errcode, whatever errmsg says.
	assert.False(t, IsRetryable(&APIError{Code: 48002, Msg: "system busy, retry"}))
}

func TestClient_RateLimited(t *testing.T) {
	f := newFake(t)
	f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) { replyCode(w, 45009) })
	c, clk := mustClient(t, archiveApp(f.srv.URL), nil)

	err := c.DeleteRule(natstest.Context(t), "", "r1")
	require.Error(t, err)
	assert.True(t, IsRateLimited(err))
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 45009, apiErr.Code)
	assert.Equal(t, 1, f.count(deletePath), "45009 is not retried")
	assert.Empty(t, clk.Sleeps(), "no backoff either")

	// Within the block: fails fast with the same error, no request.
	clk.Advance(59 * time.Second)
	err = c.DeleteRule(natstest.Context(t), "", "r1")
	assert.True(t, IsRateLimited(err))
	assert.Equal(t, 1, f.count(deletePath))

	// Other APIs of the corp are not blocked.
	f.handle("/cgi-bin/chatdata/keyword/get_rule_detail", func(w http.ResponseWriter, r *http.Request) { replyCode(w, 0) })
	_, err = c.GetRule(natstest.Context(t), "", "r1")
	require.NoError(t, err)

	// After the block, calls go out again.
	clk.Advance(2 * time.Second)
	f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) { replyCode(w, 0) })
	require.NoError(t, c.DeleteRule(natstest.Context(t), "", "r1"))
	assert.Equal(t, 2, f.count(deletePath))
}

func TestClient_Retries(t *testing.T) {
	const base = 100 * time.Millisecond
	tests := []struct {
		name    string
		fail    http.HandlerFunc
		failN   int // failures before success; -1 always
		calls   int
		wantErr func(error) bool
	}{
		{"SystemBusyThenOK", func(w http.ResponseWriter, r *http.Request) { replyCode(w, -1) }, 2, 3, nil},
		{"SystemBusyExhausted", func(w http.ResponseWriter, r *http.Request) { replyCode(w, -1) }, -1, 3,
			func(err error) bool { return errors.Is(err, ErrSystemBusy) }},
		{"HTTP503Exhausted", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, -1, 3,
			func(err error) bool { se, ok := errors.AsType[*StatusError](err); return ok && se.StatusCode == 503 }},
		{"ConnectionResetThenOK", hangUp, 1, 2, nil},
		{"HTTP404NotRetried", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, -1, 1,
			func(err error) bool { return !IsRetryable(err) }},
		{"PermissionNotRetried", func(w http.ResponseWriter, r *http.Request) { replyCode(w, 48002) }, -1, 1,
			func(err error) bool { return errors.Is(err, &APIError{Code: 48002}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var n atomic.Int32
			f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) {
				if k := int(n.Add(1)); tc.failN < 0 || k <= tc.failN {
					tc.fail(w, r)
					return
				}
				replyCode(w, 0)
			})
			c, clk := mustClient(t, archiveApp(f.srv.URL), nil, WithBackoff(base, time.Second))
			err := c.DeleteRule(natstest.Context(t), "", "r1")
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.True(t, tc.wantErr(err), "%v", err)
			}
			assert.Equal(t, tc.calls, f.count(deletePath))
			sleeps := clk.Sleeps()
			if tc.calls > 1 {
				require.Len(t, sleeps, tc.calls-1)
				for i, s := range sleeps {
					step := base << i
					assert.GreaterOrEqual(t, s, step/2, "sleep %d", i)
					assert.LessOrEqual(t, s, step, "sleep %d", i)
				}
			} else {
				assert.Empty(t, sleeps)
			}
		})
	}
}

func TestClient_AttemptTimeoutRetried(t *testing.T) {
	f := newFake(t)
	var n atomic.Int32
	f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		replyCode(w, 0)
	})
	c, _ := mustClient(t, archiveApp(f.srv.URL), nil, WithCallTimeout(200*time.Millisecond))
	require.NoError(t, c.DeleteRule(natstest.Context(t), "", "r1"))
	assert.Equal(t, 2, f.count(deletePath))
}

func TestClient_CancelledContextStopsRetries(t *testing.T) {
	f := newFake(t)
	f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) { replyCode(w, -1) })
	c, _ := mustClient(t, archiveApp(f.srv.URL), nil)
	_, err := c.accessToken(natstest.Context(t), testCorp) // token first, so only the call is counted
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	c.opt.clock = cancelOnSleep{cancel}
	err = c.DeleteRule(ctx, "", "r1")
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, errors.Is(err, ErrSystemBusy), "the last real error is kept: %v", err)
	assert.Equal(t, 1, f.count(deletePath))
}

// cancelOnSleep cancels the context when the client starts its backoff.
type cancelOnSleep struct{ cancel context.CancelFunc }

func (cancelOnSleep) Now() time.Time { return time.Unix(1717000000, 0) }

func (c cancelOnSleep) Sleep(ctx context.Context, _ time.Duration) error {
	c.cancel()
	return ctx.Err()
}

func TestClient_ResponseTooLarge(t *testing.T) {
	f := newFake(t)
	f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"errcode":0,"errmsg":"` + strings.Repeat("x", 4096) + `"}`))
	})
	c, _ := mustClient(t, archiveApp(f.srv.URL), nil, WithMaxResponseBytes(1024))
	err := c.DeleteRule(natstest.Context(t), "", "r1")
	require.ErrorIs(t, err, ErrResponseTooLarge)
	assert.Equal(t, 1, f.count(deletePath), "not retried")
}

func TestClient_ConcurrencyCap(t *testing.T) {
	f := newFake(t)
	var inFlight, peak atomic.Int32
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	f.handle(deletePath, func(w http.ResponseWriter, r *http.Request) {
		k := inFlight.Add(1)
		for p := peak.Load(); k > p && !peak.CompareAndSwap(p, k); p = peak.Load() {
		}
		entered <- struct{}{}
		<-release
		inFlight.Add(-1)
		replyCode(w, 0)
	})
	c, _ := mustClient(t, archiveApp(f.srv.URL), nil, WithMaxConcurrency(2))
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { assert.NoError(t, c.DeleteRule(context.Background(), "", "r1")) })
	}
	<-entered
	<-entered
	close(release)
	wg.Wait()
	assert.Equal(t, int32(2), peak.Load())
	assert.Equal(t, 6, f.count(deletePath))
}

// No error text ever shows a token, secret, permanent code or ticket.
func TestClient_ErrorsRedactSecrets(t *testing.T) {
	secrets := []string{testSecret, testSuiteSec, testPermCode, testTicket, testSuiteToken, "ACCESSTOKEN-"}
	assertClean := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		for _, s := range secrets {
			assert.NotContains(t, err.Error(), s)
		}
	}
	t.Run("GettokenUnreachable", func(t *testing.T) {
		f := newFake(t)
		c, _ := mustClient(t, zoneApp(f.srv.URL, false), nil, WithAttempts(1))
		f.srv.Close()
		_, err := c.GetHitMsgList(natstest.Context(t), "", HitMsgListRequest{})
		assertClean(t, err)
		assert.Contains(t, err.Error(), "gettoken?redacted")
	})
	t.Run("CallResetAfterToken", func(t *testing.T) {
		f := newFake(t)
		f.handle(deletePath, hangUp)
		c, _ := mustClient(t, archiveApp(f.srv.URL), nil, WithAttempts(2))
		err := c.DeleteRule(natstest.Context(t), "", "r1")
		assertClean(t, err)
		assert.Equal(t, 2, f.count(deletePath), "a reset is retried")
	})
	t.Run("CallTimeout", func(t *testing.T) {
		f := newFake(t)
		f.handle(syncCallProgramPath, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		c, _ := mustClient(t, zoneApp(f.srv.URL, true), nil, WithAttempts(1), WithCallTimeout(50*time.Millisecond))
		_, err := c.GetHitMsgList(natstest.Context(t), "", HitMsgListRequest{Token: "hit"})
		assertClean(t, err)
		assert.True(t, IsRetryable(err), "a timeout is retryable: %v", err)
	})
	t.Run("SuiteTicketRejected", func(t *testing.T) {
		f := newFake(t)
		f.handle("/cgi-bin/service/get_suite_token", func(w http.ResponseWriter, r *http.Request) { replyCode(w, 40085) })
		c, _ := mustClient(t, archiveApp(f.srv.URL), nil)
		err := c.DeleteRule(natstest.Context(t), "", "r1")
		assertClean(t, err)
		assert.ErrorIs(t, err, &APIError{Code: 40085})
	})
}

func TestNew_Options(t *testing.T) {
	app := zoneApp("http://127.0.0.1:1", false)
	for name, opt := range map[string]Option{
		"Attempts":       WithAttempts(0),
		"Backoff":        WithBackoff(time.Second, time.Millisecond),
		"CallTimeout":    WithCallTimeout(0),
		"MaxResponse":    WithMaxResponseBytes(0),
		"RateLimitBlock": WithRateLimitBlock(59 * time.Second),
		"Concurrency":    WithMaxConcurrency(0),
		"RefreshBefore":  WithRefreshBefore(-1),
		"TokenWait":      WithTokenWait(0),
		"LockPoll":       WithLockPoll(0),
		"HTTPClient":     WithHTTPClient(nil),
		"Clock":          WithClock(nil),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(app, nil, opt)
			assert.ErrorIs(t, err, ErrInvalidOption)
		})
	}
	t.Run("ArchiveNeedsStores", func(t *testing.T) {
		_, err := New(archiveApp("http://127.0.0.1:1"), nil)
		assert.ErrorIs(t, err, ErrInvalidOption)
	})
	t.Run("ZoneNeedsProgram", func(t *testing.T) {
		a := app
		a.ProgramID = ""
		_, err := New(a, nil)
		assert.ErrorIs(t, err, ErrInvalidOption)
	})
	t.Run("UnknownCorp", func(t *testing.T) {
		c, err := New(app, nil)
		require.NoError(t, err)
		_, err = c.GetHitMsgList(context.Background(), "wwother", HitMsgListRequest{})
		assert.ErrorIs(t, err, ErrUnknownCorp)
	})
	t.Run("NoAbility", func(t *testing.T) {
		f := newFake(t)
		a := zoneApp(f.srv.URL, false)
		a.Abilities = map[string]string{opGetHitMsgList: "x"}
		c, err := New(a, nil)
		require.NoError(t, err)
		err = c.DeleteRule(context.Background(), "", "r1")
		assert.ErrorIs(t, err, ErrNoAbility)
		assert.Zero(t, f.count(""))
	})
}
