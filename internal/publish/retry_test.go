package publish_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

var origin = publish.Origin{App: "archive", CorpID: "wwCorp", Source: "callback"}

// TestPage_StreamAppearsLate: the stream cannot answer for the first
// second (as while its leader is elected; here it does not exist yet); the
// page is published in full once it can, within the page's deadline.
func TestPage_StreamAppearsLate(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	p, err := publish.New(js, prefix, publish.WithWindow(3))
	require.NoError(t, err)
	created := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		created <- p.Setup(ctx)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := p.Publish(ctx, hitPage(origin, page()))
	require.NoError(t, err)
	require.NoError(t, <-created)
	assert.Equal(t, 4, res.Published)
}

// TestPage_ErrNoStreamAtDeadline: with no stream at all the page fails
// when its deadline passes, not earlier, with the reason.
func TestPage_ErrNoStreamAtDeadline(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	p, err := publish.New(js, prefix)
	require.NoError(t, err)
	const deadline = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	began := time.Now()
	_, err = p.Publish(ctx, hitPage(origin, page()))
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(began), deadline-50*time.Millisecond, "gave up before the deadline: %v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
}
