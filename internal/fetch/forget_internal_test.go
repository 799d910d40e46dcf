package fetch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// switchCorps is a Corps whose corps a test takes away (a cancellation).
type switchCorps struct {
	mu   sync.Mutex
	gone bool
}

func (s *switchCorps) Corps(string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return nil
	}
	return []string{"c1"}
}

func (s *switchCorps) Resolve(app, corp string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || corp != "c1" {
		return "", fmt.Errorf("app %s has no corp %q", app, corp)
	}
	return corp, nil
}

type noLister struct{}

func (noLister) Publish(context.Context, *wecomhit.HitPage) (wecomhit.PageResult, error) {
	return wecomhit.PageResult{}, errors.New("not called")
}

func (noLister) GetHitMsgList(context.Context, string, wecom.HitMsgListRequest) (*wecom.HitMsgList, error) {
	return nil, errors.New("not called")
}

// TestForget_NoWorkerAfter: once a corp has left the Corps and been
// forgotten, a callback or poll that resolved it just before (and so holds
// its old worker, or asks for a new one) neither waits forever on the
// stopped worker (a shared intake consumer would hang until its deadline)
// nor starts a new worker, which would write the cancelled corp's lease,
// cursor and health again.
func TestForget_NoWorkerAfter(t *testing.T) {
	cs := &switchCorps{}
	f, err := New(nil, []App{{Name: "a", API: noLister{}}}, noLister{}, WithCorps(cs))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.mu.Lock()
	f.ctx = ctx // as Run does; no worker runs, so nothing is fetched
	old := f.corpLocked("a", "c1")
	f.mu.Unlock()
	require.NotNil(t, old)
	cs.mu.Lock()
	cs.gone = true
	cs.mu.Unlock()
	require.NoError(t, f.Forget(ctx, "a", "c1"))

	f.mu.Lock()
	assert.Nil(t, f.corpLocked("a", "c1"), "no new fetch for a forgotten corp")
	tk, first := old.join()
	f.mu.Unlock()
	require.True(t, first)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	err = tk.wait(wctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "a stopped corp answers at once")
}

// goneAfterResolve is a Corps that serves c1 until its first Resolve: the
// corp is cancelled just after a callback resolved it.
type goneAfterResolve struct{ switchCorps }

func (g *goneAfterResolve) Resolve(app, corp string) (string, error) {
	name, err := g.switchCorps.Resolve(app, corp)
	g.mu.Lock()
	g.gone = true
	g.mu.Unlock()
	return name, err
}

// TestHandle_TokenOfCorpCancelledMeanwhile: a callback that resolved its
// corp just before the corp was cancelled (and Forget purged the token
// bucket) does not leave its token stored for up to its TTL.
func TestHandle_TokenOfCorpCancelledMeanwhile(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	f, err := New(js, []App{{Name: "a", API: noLister{}}}, noLister{}, WithCorps(&goneAfterResolve{}))
	require.NoError(t, err)
	ctx := natstest.Context(t)
	require.NoError(t, f.Setup(ctx))

	err = f.Handle(ctx, &wecomhit.Callback{
		App: "a", CorpID: "c1", Kind: wecomhit.KindHitKeyword, Token: "T1", ReceivedAt: time.Now(),
	})
	require.Error(t, err, "the corp is no longer served")
	_, err = f.tokens.Get(ctx, key("a", "c1"))
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "no token of a cancelled corp stays")
}
