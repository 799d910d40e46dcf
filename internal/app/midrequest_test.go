package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// TestServe_NATSStopsMidRequest stops NATS while callbacks are in flight
// (each waiting for its PubAck): every
// callback is answered 200 or 503, nothing else; once NATS is back, WeCom's
// retries of the refused ones succeed, every callback answered 200 is
// stored, and none twice, although the refused ones may have reached the
// stream before their retries.
func TestServe_NATSStopsMidRequest(t *testing.T) {
	store := t.TempDir()
	srv := natstest.RunServer(t, natstest.WithStoreDir(store))
	port := natstest.Port(t, srv)
	m, _ := startMain(t, testConfig(t, "1h", "500ms", srv.ClientURL()))
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)

	type sealed struct {
		query    url.Values
		body, id string
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	var (
		mu      sync.Mutex
		all     []sealed
		ok      = map[string]bool{}
		refused []sealed
		others  []string
	)
	// Each sender posts distinct callbacks until told to stop; the
	// ciphertext's random prefix makes each one a new record id.
	var stop atomic.Bool
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				enc, sig, err := c.Seal(noActionXML, ts, "n1")
				if err != nil {
					stop.Store(true)
				}
				q := callbacktest.Query(sig, ts, "n1")
				cb := sealed{q, callbacktest.XMLEnvelope(enc), callback.CallbackID("v1", enc)}
				var status int
				var body string
				if err == nil {
					status, body, err = post(client, callbackURL(m, "v1", q), cb.body)
				}
				mu.Lock()
				all = append(all, cb)
				switch {
				case err != nil:
					others = append(others, err.Error())
				case status == http.StatusOK:
					ok[cb.id] = true
				case status == http.StatusServiceUnavailable:
					refused = append(refused, cb)
				default:
					others = append(others, fmt.Sprintf("%d %s", status, body))
				}
				mu.Unlock()
			}
		}()
	}
	count := func(f func() int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if n := f(); n < 20 {
				return fmt.Errorf("%d so far", n)
			}
			return nil
		}
	}
	natstest.WaitFor(t, 10*time.Second, count(func() int { return len(ok) }))
	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.WaitFor(t, 10*time.Second, count(func() int { return len(refused) }))
	stop.Store(true)
	wg.Wait()
	require.Empty(t, others, "every answer is 200 or 503")

	natstest.RunServer(t, natstest.WithStoreDir(store), natstest.WithPort(port))
	natstest.WaitFor(t, 10*time.Second, func() error { return m.Ready(context.Background()) })
	for _, cb := range refused {
		status, body := send(t, http.MethodPost, callbackURL(m, "v1", cb.query), cb.body)
		require.Equal(t, http.StatusOK, status, body)
		ok[cb.id] = true
	}

	recs := records(t, m.Broker().JetStream())
	stored := map[string]bool{}
	for _, r := range recs {
		stored[r.ID] = true
	}
	for id := range ok {
		assert.True(t, stored[id], "callback %s answered 200 but not stored", id)
	}
	assert.Len(t, ok, len(all), "every callback answered 200 in the end")
	assert.Equal(t, uint64(len(all)), streamMsgs(t, m.Broker().JetStream()), "each callback stored once")
}

// post is send without require, for use off the test goroutine.
func post(client *http.Client, u, body string) (int, string, error) {
	resp, err := client.Post(u, "text/xml", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// noActionXML is a callback the service stores and acks without calling
// WeCom: the test is about storing.
const noActionXML = `<xml><SuiteId><![CDATA[wwArchiveSuite01]]></SuiteId><AuthCorpId><![CDATA[wwCorpABC123]]></AuthCorpId>` +
	`<InfoType><![CDATA[conversation_new_message]]></InfoType><TimeStamp>1717000000</TimeStamp></xml>`
