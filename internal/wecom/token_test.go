package wecom

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// Three clients, each with its own NATS connection to one server, ask for
// a token at once: one gettoken call, and the other two use its token.
func TestClient_TokenSharedAcrossReplicas(t *testing.T) {
	srv := natstest.RunServer(t)
	f := newFake(t)
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	f.handle("/cgi-bin/gettoken", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		reply(w, map[string]any{"access_token": "SHARED-TOKEN", "expires_in": 7200})
	})

	var mu sync.Mutex
	waiting := map[int]bool{}
	clients := make([]*Client, 3)
	for i := range clients {
		_, js := natstest.Connect(t, srv)
		stores, err := OpenStores(natstest.Context(t), js, StoreConfig{})
		require.NoError(t, err)
		c, err := New(zoneApp(f.srv.URL, false), stores, WithLockPoll(5*time.Millisecond))
		require.NoError(t, err)
		c.tokens.onLockBusy = func(string) {
			mu.Lock()
			waiting[i] = true
			mu.Unlock()
		}
		clients[i] = c
	}

	start := make(chan struct{})
	tokens := make([]string, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			<-start
			tokens[i], errs[i] = c.accessToken(natstest.Context(t), testCorp)
		})
	}
	close(start)
	<-entered // one holds the lock and is inside gettoken
	// Hold the answer until both others have found the lock taken, so the
	// test really has three concurrent askers.
	natstest.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(waiting) < 2 {
			return assert.AnError
		}
		return nil
	})
	close(release)
	wg.Wait()

	for i := range clients {
		require.NoError(t, errs[i])
		assert.Equal(t, "SHARED-TOKEN", tokens[i])
	}
	assert.Equal(t, 1, f.count("/cgi-bin/gettoken"))

	// A fourth replica starting later reads the token from KV.
	_, js := natstest.Connect(t, srv)
	stores, err := OpenStores(natstest.Context(t), js, StoreConfig{})
	require.NoError(t, err)
	c4, err := New(zoneApp(f.srv.URL, false), stores)
	require.NoError(t, err)
	tok, err := c4.accessToken(natstest.Context(t), testCorp)
	require.NoError(t, err)
	assert.Equal(t, "SHARED-TOKEN", tok)
	assert.Equal(t, 1, f.count("/cgi-bin/gettoken"))
}

// Many goroutines of one client: one gettoken call.
func TestClient_TokenSingleFlightInProcess(t *testing.T) {
	f := newFake(t)
	c, _ := mustClient(t, zoneApp(f.srv.URL, false), nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := c.accessToken(context.Background(), testCorp)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Equal(t, 1, f.count("/cgi-bin/gettoken"))
}

func TestClient_TokenRefreshedBeforeExpiry(t *testing.T) {
	f := newFake(t)
	c, clk := mustClient(t, zoneApp(f.srv.URL, false), mustStores(t))
	tok1, err := c.accessToken(natstest.Context(t), testCorp)
	require.NoError(t, err)
	clk.Advance(7200*time.Second - DefaultRefreshBefore - time.Second)
	tok, err := c.accessToken(natstest.Context(t), testCorp)
	require.NoError(t, err)
	assert.Equal(t, tok1, tok, "still fresh")
	clk.Advance(2 * time.Second)
	tok2, err := c.accessToken(natstest.Context(t), testCorp)
	require.NoError(t, err)
	assert.NotEqual(t, tok1, tok2, "refreshed 5 minutes before expiry")
	assert.Equal(t, 2, f.count("/cgi-bin/gettoken"))
}

// A lock whose holder died expires with the bucket's TTL; a waiter then
// takes over.
func TestClient_TokenLockExpires(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	stores, err := OpenStores(natstest.Context(t), js, StoreConfig{LockTTL: time.Second})
	require.NoError(t, err)
	f := newFake(t)
	c, err := New(zoneApp(f.srv.URL, false), stores, WithLockPoll(20*time.Millisecond))
	require.NoError(t, err)
	key := c.corpTokenKey(testCorp)
	_, err = stores.Locks.Create(natstest.Context(t), key, []byte("dead-holder"))
	require.NoError(t, err)

	tok, err := c.accessToken(natstest.Context(t), testCorp)
	require.NoError(t, err)
	assert.Equal(t, "ACCESSTOKEN-1", tok)
	assert.Equal(t, 1, f.count("/cgi-bin/gettoken"))
}

func TestClient_TokenInvalidRefreshesOnce(t *testing.T) {
	t.Run("Recovers", func(t *testing.T) {
		f := newFake(t)
		var n int
		var mu sync.Mutex
		f.handle("/cgi-bin/chatdata/keyword/delete_rule", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			first := n == 1
			mu.Unlock()
			if first {
				replyCode(w, 42001)
				return
			}
			replyCode(w, 0)
		})
		stores := mustStores(t)
		c, _ := mustClient(t, archiveApp(f.srv.URL), stores)
		require.NoError(t, c.DeleteRule(natstest.Context(t), "", "r1"))
		reqs := f.requests("/cgi-bin/chatdata/keyword/delete_rule")
		require.Len(t, reqs, 2)
		assert.Equal(t, "ACCESSTOKEN-1", reqs[0].Query.Get("access_token"))
		assert.Equal(t, "ACCESSTOKEN-2", reqs[1].Query.Get("access_token"))
		assert.Equal(t, 2, f.count("/cgi-bin/service/get_corp_token"))
		assert.Equal(t, 1, f.count("/cgi-bin/service/get_suite_token"), "the suite token was fine")

		// The bad token is gone from KV too: the stored one is the new one.
		e, err := stores.Tokens.Get(natstest.Context(t), c.corpTokenKey(testCorp))
		require.NoError(t, err)
		assert.Contains(t, string(e.Value()), "ACCESSTOKEN-2")
	})
	t.Run("GivesUpAfterOneRetry", func(t *testing.T) {
		f := newFake(t)
		f.handle(syncCallProgramPath, func(w http.ResponseWriter, r *http.Request) { replyCode(w, 40014) })
		c, _ := mustClient(t, zoneApp(f.srv.URL, false), mustStores(t))
		_, err := c.GetHitMsgList(natstest.Context(t), "", HitMsgListRequest{})
		require.Error(t, err)
		assert.True(t, IsTokenInvalid(err))
		assert.Equal(t, 2, f.count(syncCallProgramPath))
		assert.Equal(t, 2, f.count("/cgi-bin/gettoken"))
	})
	// 42009: the suite token expired; 40082: WeCom does not know it (it
	// was invalidated early, or a restarted simulator never issued it).
	// Either way it is dropped and a new one is fetched, once.
	for name, code := range map[string]int{"SuiteTokenExpired": 42009, "SuiteTokenUnknown": 40082} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			var mu sync.Mutex
			n := 0
			f.handle("/cgi-bin/service/get_corp_token", func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				first := n == 1
				mu.Unlock()
				if first {
					replyCode(w, code)
					return
				}
				reply(w, map[string]any{"access_token": "CORP-TOKEN", "expires_in": 7200})
			})
			f.handle("/cgi-bin/chatdata/keyword/delete_rule", func(w http.ResponseWriter, r *http.Request) { replyCode(w, 0) })
			c, _ := mustClient(t, archiveApp(f.srv.URL), nil)
			require.NoError(t, c.DeleteRule(natstest.Context(t), "", "r1"))
			assert.Equal(t, 2, f.count("/cgi-bin/service/get_suite_token"))
			assert.Equal(t, 2, f.count("/cgi-bin/service/get_corp_token"))
		})
	}
	t.Run("StaleInvalidationKeepsNewToken", func(t *testing.T) {
		stores := mustStores(t)
		f := newFake(t)
		c, _ := mustClient(t, zoneApp(f.srv.URL, false), stores)
		tok, err := c.accessToken(natstest.Context(t), testCorp)
		require.NoError(t, err)
		// Another replica reports an older token as bad: ours stays.
		require.NoError(t, c.invalidateToken(natstest.Context(t), testCorp, "OLD-TOKEN"))
		e, err := stores.Tokens.Get(natstest.Context(t), c.corpTokenKey(testCorp))
		require.NoError(t, err)
		assert.Contains(t, string(e.Value()), tok)
	})
}

func TestClient_ArchiveNeedsTicket(t *testing.T) {
	f := newFake(t)
	c, err := New(archiveApp(f.srv.URL), mustStores(t))
	require.NoError(t, err)
	_, err = c.GetRule(natstest.Context(t), "", "r1")
	require.ErrorIs(t, err, ErrNoSuiteTicket)
	assert.Zero(t, f.count(""))
}

func TestKVKey(t *testing.T) {
	assert.Equal(t, "app.corp.ww01", kvKey("app", "corp", "ww01"))
	assert.Equal(t, "a=2Eb.c=3D=2F", kvKey("a.b", "c=/"))
}

func TestBindStores(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	_, err := BindStores(natstest.Context(t), js)
	require.ErrorIs(t, err, ErrNoStores)

	_, err = OpenStores(natstest.Context(t), js, StoreConfig{LockTTL: 7 * time.Second})
	require.NoError(t, err)
	s, err := BindStores(natstest.Context(t), js)
	require.NoError(t, err)
	assert.Equal(t, 7*time.Second, s.lockTTL, "the lock TTL is the bucket's, not a default")
	st, err := s.Locks.Status(natstest.Context(t))
	require.NoError(t, err)
	assert.Equal(t, 7*time.Second, st.TTL(), "binding changed nothing")
}
