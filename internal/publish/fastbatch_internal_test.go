package publish

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// fastStream is a stream taking fast batches on fast.>, with cfg's limits.
func fastStream(t *testing.T, cfg jetstream.StreamConfig) (*nats.Conn, jetstream.Stream) {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	cfg.Name, cfg.Subjects, cfg.AllowBatchPublish = "FAST", []string{"fast.>"}, true
	cfg.Duplicates = time.Minute
	s, err := js.CreateStream(t.Context(), cfg)
	require.NoError(t, err)
	return nc, s
}

// fastMsgs are messages from..from+n-1, each with its own Nats-Msg-Id and
// size bytes of payload.
func fastMsgs(from, n, size int) []*nats.Msg {
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		id := fmt.Sprintf("e%d", from+i)
		msgs[i] = &nats.Msg{Subject: "fast." + id, Data: []byte(strings.Repeat("x", size)),
			Header: nats.Header{jetstream.MsgIDHeader: {id}}}
	}
	return msgs
}

// stored lists the Nats-Msg-Ids in the stream, in stream order.
func stored(t *testing.T, s jetstream.Stream) []string {
	t.Helper()
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

func ids(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("e%d", from+i)
	}
	return out
}

// TestPublishFast_Duplicates: a batch published again stores nothing new
// and says so; one overlapping what is stored stores only the new part; the
// events stay in order.
func TestPublishFast_Duplicates(t *testing.T) {
	nc, s := fastStream(t, jetstream.StreamConfig{})
	ctx := t.Context()

	allDup, err := publishFast(ctx, nc, "FAST", fastMsgs(0, 300, 100), 64)
	require.NoError(t, err)
	assert.False(t, allDup)
	assert.Equal(t, ids(0, 300), stored(t, s))

	allDup, err = publishFast(ctx, nc, "FAST", fastMsgs(0, 300, 100), 64)
	require.NoError(t, err, "duplicates, the first message included, are skipped, not refused")
	assert.True(t, allDup, "nothing stored: every one a duplicate")
	assert.Equal(t, ids(0, 300), stored(t, s), "no second copy")

	allDup, err = publishFast(ctx, nc, "FAST", fastMsgs(250, 100, 100), 512)
	require.NoError(t, err)
	assert.False(t, allDup)
	assert.Equal(t, ids(0, 350), stored(t, s), "the 50 new ones, after the others")
}

// TestPublishFast_StoreFull: a stream that refuses messages in mid-batch
// (MaxBytes, DiscardNew) fails the batch, and what it stored is a prefix of
// the batch: nothing after an event it refused.
func TestPublishFast_StoreFull(t *testing.T) {
	for _, window := range []int{8, 512} {
		t.Run(fmt.Sprintf("window%d", window), func(t *testing.T) {
			nc, s := fastStream(t, jetstream.StreamConfig{MaxBytes: 64 << 10, Discard: jetstream.DiscardNew})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			// 50 KiB that fit, 20 KiB that do not, then small ones that
			// would: the batch must end at the big one.
			msgs := append(fastMsgs(0, 50, 1000), fastMsgs(50, 1, 20000)...)
			msgs = append(msgs, fastMsgs(51, 20, 10)...)
			_, err := publishFast(ctx, nc, "FAST", msgs, window)
			require.Error(t, err, "the stream refused an event")
			assert.Contains(t, err.Error(), "maximum bytes exceeded")
			assert.Equal(t, ids(0, 50), stored(t, s), "what fit, in order, and nothing after the refused event")
		})
	}
}

// TestPublishFast_NotAllowed: a stream without allow_batched refuses the
// batch at its first message; nothing is stored.
func TestPublishFast_NotAllowed(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	s, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "PLAIN", Subjects: []string{"fast.>"}})
	require.NoError(t, err)
	_, err = publishFast(t.Context(), nc, "PLAIN", fastMsgs(0, 10, 10), 512)
	require.Error(t, err)
	assert.Empty(t, stored(t, s))
}

// publishFast publishes msgs, at least one, to stream as one fast batch
// (add, commit): the batch alone, without a page around it.
func publishFast(ctx context.Context, nc *nats.Conn, stream string, msgs []*nats.Msg, window int) (allDup bool, err error) {
	b, err := newFastBatch(nc, stream, len(msgs), window)
	if err != nil {
		return false, err
	}
	defer b.close()
	for _, m := range msgs[:len(msgs)-1] {
		if err := b.add(ctx, m); err != nil {
			return false, err
		}
	}
	return b.commit(ctx, msgs[len(msgs)-1])
}
