package wecom

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewTransport_ReusesConnections: calls that run at once, as the fetch
// workers' do, each need a connection; the next round of as many calls
// reuses them instead of dialling again. Go's default transport keeps two
// idle connections per host, so it dialled nearly every call anew.
func TestNewTransport_ReusesConnections(t *testing.T) {
	const concurrent = 24
	var dialled atomic.Int32
	var arrived sync.WaitGroup
	var release atomic.Pointer[chan struct{}]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wait := *release.Load()
		arrived.Done()
		<-wait // hold every call until all have arrived: they run at once
		_, _ = w.Write([]byte(`{"errcode":0}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: newTransport()}
	t.Cleanup(hc.CloseIdleConnections)

	round := func() {
		arrived.Add(concurrent)
		ch := make(chan struct{})
		release.Store(&ch)
		var done sync.WaitGroup
		for range concurrent {
			done.Go(func() {
				resp, err := hc.Get(srv.URL)
				if assert.NoError(t, err) {
					_, _ = io.Copy(io.Discard, resp.Body) // as the Client does
					_ = resp.Body.Close()
				}
			})
		}
		arrived.Wait()
		close(ch)
		done.Wait()
	}
	round()
	require.EqualValues(t, concurrent, dialled.Load(), "one connection per call at once")
	round()
	round()
	assert.EqualValues(t, concurrent, dialled.Load(), "later rounds reuse the pooled connections")
}
