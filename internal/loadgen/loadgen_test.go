package loadgen_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/loadgen"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// receiver is the service's callback endpoint for the archive app of
// testvectors.V1, storing into js's WECOM_CALLBACKS as the receiver does
// with its embedded server: the record id in intake.IDHeader, not
// Nats-Msg-Id.
func receiver(t *testing.T, js jetstream.JetStream) *chi.Mux {
	t.Helper()
	store, err := intake.New(js, "wecom", intake.WithLocalDedup(true))
	require.NoError(t, err)
	require.NoError(t, store.Setup(context.Background()))
	v := testvectors.V1
	cr, err := crypto.New(v.Token, v.EncodingAESKey, v.ReceiveID)
	require.NoError(t, err)
	h, err := callback.New([]callback.App{{Name: "archive", Crypter: cr}}, store)
	require.NoError(t, err)
	r := chi.NewRouter()
	h.Mount(r)
	return r
}

// TestRun_StoredEqualsOK: every kind, closed loop and at a rate, is
// accepted as distinct callbacks, and the stream holds exactly the
// callbacks answered 200.
func TestRun_StoredEqualsOK(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	r := receiver(t, js)
	v := testvectors.V1
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	total := 0
	for _, kind := range loadgen.Kinds {
		for _, rate := range []float64{0, 500} {
			from, err := loadgen.NextSeq(context.Background(), js, intake.StreamName)
			require.NoError(t, err)
			res, err := loadgen.Run(context.Background(), loadgen.Config{
				URL: srv.URL + "/callback/archive", Token: v.Token, EncodingAESKey: v.EncodingAESKey, ReceiveID: v.ReceiveID,
				Kind: kind, Rate: rate, Conns: 4, N: 12,
			})
			require.NoError(t, err)
			require.Equal(t, 12, res.Sent, kind)
			require.Equal(t, map[int]int{200: 12}, res.Status, "%s: %s", kind, res.FirstError)
			require.Len(t, res.OK, 12, "distinct record ids")
			require.Equal(t, uint64(12), res.Latency.Count())
			chk, err := loadgen.Verify(context.Background(), js, intake.StreamName, from, res)
			require.NoError(t, err)
			require.Equal(t, 12, chk.Stored, kind)
			require.Zero(t, chk.Unconfirmed)
			total += 12
		}
	}
	s, err := js.Stream(context.Background(), intake.StreamName)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(total), info.State.Msgs, "no callback collapsed into another")

	// A 200 the stream does not hold is reported as lost.
	res := &loadgen.Result{OK: map[string]struct{}{"not-stored": {}}, All: map[string]struct{}{"not-stored": {}}}
	chk, err := loadgen.Verify(context.Background(), js, intake.StreamName, 1, res)
	require.ErrorIs(t, err, loadgen.ErrLost)
	require.Equal(t, []string{"not-stored"}, chk.Missing)

	// A wrong key: every callback is refused, none stored, none lost.
	from, err := loadgen.NextSeq(context.Background(), js, intake.StreamName)
	require.NoError(t, err)
	res, err = loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.URL + "/callback/archive", Token: v.Token, EncodingAESKey: testvectors.V2.EncodingAESKey, ReceiveID: v.ReceiveID,
		Conns: 2, N: 5,
	})
	require.NoError(t, err)
	require.Zero(t, res.Status[200])
	require.Equal(t, 5, res.Answered)
	chk, err = loadgen.Verify(context.Background(), js, intake.StreamName, from, res)
	require.NoError(t, err)
	require.Zero(t, chk.Stored)
}

// TestRun_Refuses: a run without a bound, to a host off loopback, of an
// unknown kind or with a bad key sends nothing.
func TestRun_Refuses(t *testing.T) {
	v := testvectors.V1
	base := loadgen.Config{URL: "http://127.0.0.1:1/callback/a", Token: v.Token, EncodingAESKey: v.EncodingAESKey, N: 1}
	for name, mod := range map[string]func(*loadgen.Config){
		"NoBound":     func(c *loadgen.Config) { c.N = 0 },
		"Remote":      func(c *loadgen.Config) { c.URL = "http://192.0.2.1/callback/a" },
		"RemoteName":  func(c *loadgen.Config) { c.URL = "http://example.com/callback/a" },
		"Kind":        func(c *loadgen.Config) { c.Kind = "nope" },
		"Key":         func(c *loadgen.Config) { c.EncodingAESKey = "short" },
		"NoApp":       func(c *loadgen.Config) { c.URL = "http://127.0.0.1:1/" },
		"Scheme":      func(c *loadgen.Config) { c.URL = "ftp://127.0.0.1/x" },
		"Rate":        func(c *loadgen.Config) { c.Rate = -1 },
		"RateTooHigh": func(c *loadgen.Config) { c.Rate = 1e10 },
		"RateInf":     func(c *loadgen.Config) { c.Rate = math.Inf(1) },
		"RateNaN":     func(c *loadgen.Config) { c.Rate = math.NaN() },
	} {
		t.Run(name, func(t *testing.T) {
			c := base
			mod(&c)
			res, err := loadgen.Run(context.Background(), c)
			require.ErrorIs(t, err, loadgen.ErrInvalidConfig)
			require.Nil(t, res)
		})
	}
}

func TestHistogram_Quantile(t *testing.T) {
	h := loadgen.NewHistogram()
	require.Zero(t, h.Quantile(0.5))
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.9, 9 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.Quantile(tc.q)
		require.GreaterOrEqual(t, got, tc.want, "q %v", tc.q)
		require.LessOrEqual(t, float64(got), float64(tc.want)*1.008, "q %v within 0.8%%", tc.q)
	}
	require.Equal(t, 10*time.Millisecond, h.Max())
	o := loadgen.NewHistogram()
	o.Record(time.Second)
	o.Record(-1)
	h.Merge(o)
	require.Equal(t, uint64(10002), h.Count())
	require.Equal(t, time.Second, h.Quantile(1))
	require.Zero(t, loadgen.NewHistogram().Max())
}

// TestRun_CountsCallbacksTheRunHadNoTimeToSend: at a rate the server
// cannot follow, the callbacks that were due but still unsent when the
// run's time was up are counted, as errors with their latency so far,
// not dropped from the results: dropping them would leave out the worst
// latencies of a saturated server (coordinated omission at the end).
func TestRun_CountsCallbacksTheRunHadNoTimeToSend(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a server that has stopped answering
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	v := testvectors.V1
	// 10,000 callbacks due within 100 ms, more than the queue holds, to
	// one connection that never gets an answer.
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.URL + "/callback/archive", Token: v.Token, EncodingAESKey: v.EncodingAESKey, ReceiveID: v.ReceiveID,
		Rate: 100_000, Duration: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Conns: 1,
	})
	require.NoError(t, err)
	require.Zero(t, res.Answered)
	require.Equal(t, 10_000, res.Sent, "every scheduled callback is accounted for")
	require.Equal(t, 10_000, res.Errors)
	require.Equal(t, uint64(10_000), res.Latency.Count())
}

// TestRun_LatencyFromScheduledSend: a server that stalls once is charged
// for every callback that fell due during the stall, not only for the one
// it held: latency runs from each callback's scheduled time.
func TestRun_LatencyFromScheduledSend(t *testing.T) {
	const stall = 300 * time.Millisecond
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { time.Sleep(stall) })
	}))
	t.Cleanup(srv.Close)
	v := testvectors.V1
	// 40 callbacks due over 200 ms, one connection: all but the first
	// fall due while the first is held.
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.URL + "/callback/archive", Token: v.Token, EncodingAESKey: v.EncodingAESKey, ReceiveID: v.ReceiveID,
		Rate: 200, N: 40, Conns: 1,
	})
	require.NoError(t, err)
	require.Equal(t, map[int]int{200: 40}, res.Status)
	// The median callback was due 100 ms in and answered after the stall
	// ended, at 300 ms or later: it waited at least 200 ms. Measured from
	// when a connection was free it would show almost nothing.
	require.GreaterOrEqual(t, res.Latency.Quantile(0.5), stall-100*time.Millisecond-time.Millisecond)
}
