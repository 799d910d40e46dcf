package publish_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// manyEvents is n messages of two rules each: 2n events.
func manyEvents(from, n int) []wecomhit.HitMessage {
	msgs := make([]wecomhit.HitMessage, n)
	for i := range msgs {
		msgs[i] = wecomhit.HitMessage{MsgID: fmt.Sprintf("m%d", from+i),
			HitRules: []wecomhit.HitRule{{RuleID: "r1", HasHitKeyword: true}, {RuleID: "r2", SemanticsList: []int{1}}},
			Detail:   &wecomhit.MsgDetail{SendTime: 1717000000, MsgType: 1, Sender: wecomhit.Party{Type: 1, ID: "u1"}}}
	}
	return msgs
}

// storedIDs lists the stream's Nats-Msg-Ids in stream order.
func storedIDs(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	s, err := js.Stream(t.Context(), publish.StreamName)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	var ids []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

// pageIDs are the Nats-Msg-Ids of manyEvents' events, in page order.
func pageIDs(msgs []wecomhit.HitMessage) []string {
	var ids []string
	for _, m := range msgs {
		for _, r := range m.HitRules {
			ids = append(ids, publish.MsgID("wwCorp", m.MsgID, r.RuleID))
		}
	}
	return ids
}

// batchedEvents counts the events published on nc's server as messages of
// a fast batch: a plain subscriber sees each with the batch's reply
// subject, which ends in ".$FI". It tells a page that went as batches from
// one whose events went one by one, which store the same.
func batchedEvents(t *testing.T, nc *nats.Conn) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub, err := nc.Subscribe(prefix+".hit.>", func(m *nats.Msg) {
		if strings.HasSuffix(m.Reply, ".$FI") {
			n.Add(1)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
	return &n
}

// TestPublisher_FastBatches: Setup turns allow_batched on, also on a stream
// an earlier version made without it; a page of more events than the
// window goes as batches, stored once each in page order, and the same page
// again stores nothing and counts duplicates. With WithFastBatches(false)
// the stream's allow_batched goes off again and pages still publish.
func TestPublisher_FastBatches(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	batched := batchedEvents(t, nc)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: publish.StreamName, Subjects: []string{prefix + ".hit.>"}})
	require.NoError(t, err)
	var logs testlog.Buffer
	p, err := publish.New(js, prefix, publish.WithLogger(zerolog.New(&logs)))
	require.NoError(t, err)
	require.NoError(t, p.Setup(ctx))
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	assert.True(t, s.CachedInfo().Config.AllowBatchPublish, "the existing stream takes fast batches now")

	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	msgs := manyEvents(0, 400) // 800 events: a batch of the window (512) and one of the rest
	res, err := p.Publish(ctx, hitPage(o, msgs))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Published: 800}, res)
	assert.Equal(t, pageIDs(msgs), storedIDs(t, js), "each event once, in page order")
	natstest.Eventually(t, 5*time.Second, "the page's events seen as fast-batch messages",
		func() bool { return batched.Load() == 800 })

	res, err = p.Publish(ctx, hitPage(o, msgs))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Duplicates: 800}, res, "the page again: nothing stored")
	assert.Equal(t, pageIDs(msgs), storedIDs(t, js), "no second copy")

	more := manyEvents(300, 200) // 100 messages stored, 100 new
	_, err = p.Publish(ctx, hitPage(o, more))
	require.NoError(t, err)
	assert.Equal(t, append(pageIDs(msgs), pageIDs(more[100:])...), storedIDs(t, js), "only the new events, after the others")
	assert.NotContains(t, logs.String(), "fast batch failed", "every page went as fast batches")

	off, err := publish.New(js, prefix, publish.WithFastBatches(false))
	require.NoError(t, err)
	require.NoError(t, off.Setup(ctx))
	s, err = js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	assert.False(t, s.CachedInfo().Config.AllowBatchPublish)
	last := manyEvents(500, 10)
	res, err = off.Publish(ctx, hitPage(o, last))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Published: 20}, res)
}

// TestPublisher_FastBatchFull: a page the stream refuses in mid-batch
// (MaxBytes, DiscardNew) fails, so its fetch keeps the cursor; what was
// stored is the page's first events in order, nothing after the first
// refused one; with room made, publishing the page again completes it
// with each event once.
func TestPublisher_FastBatchFull(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var logs testlog.Buffer
	p, err := publish.New(js, prefix, publish.WithMaxBytes(256<<10),
		publish.WithLogger(zerolog.New(&logs).Level(zerolog.InfoLevel)))
	require.NoError(t, err)
	require.NoError(t, p.Setup(ctx))
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	msgs := manyEvents(0, 400) // 800 events of about 700 bytes stored: more than 256 KiB
	_, err = p.Publish(ctx, hitPage(o, msgs))
	require.Error(t, err, "the page is not done")
	got := storedIDs(t, js)
	require.NotEmpty(t, got)
	require.Less(t, len(got), 800)
	assert.Equal(t, pageIDs(msgs)[:len(got)], got, "a prefix of the page: nothing after an unstored event")
	_, err = p.Publish(ctx, hitPage(o, msgs))
	require.Error(t, err, "still full")
	assert.Equal(t, got, storedIDs(t, js))
	assert.Equal(t, 1, strings.Count(logs.String(), "fast batch failed"), "logged when batches start failing, not at every page")

	// Room made (as an operator would, on the stream).
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxBytes = 4 << 20
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	res, err := p.Publish(ctx, hitPage(o, msgs))
	require.NoError(t, err)
	assert.Equal(t, 800, res.Published+res.Duplicates)
	assert.Equal(t, pageIDs(msgs), storedIDs(t, js), "each event once, in page order")
	assert.Contains(t, logs.String(), "fast batches stored again")
}

// TestPublisher_FastBatchSameMessages: events published in fast batches are
// stored with the subject, headers and payload the per-event path gives
// them (docs/events.md), byte for byte, in the same order.
func TestPublisher_FastBatchSameMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	o := publish.Origin{App: "archive", CorpID: "wwCorp 企业", Source: wecomhit.SourceCallback, UsedHitToken: true, FetchedAt: time.Now()}
	msgs := append(page(), manyEvents(100, 300)...) // more than a window: two batches
	stored := func(fast bool) []*jetstream.RawStreamMsg {
		nc, js := natstest.Connect(t, natstest.RunServer(t))
		batched := batchedEvents(t, nc)
		p, err := publish.New(js, prefix, publish.WithFastBatches(fast), publish.WithRuleNames(names{"wwCorp 企业/r1": "联系方式"}))
		require.NoError(t, err)
		require.NoError(t, p.Setup(ctx))
		res, err := p.Publish(ctx, hitPage(o, msgs))
		require.NoError(t, err)
		require.Equal(t, publish.Result{Published: 604}, res)
		if fast {
			natstest.Eventually(t, 5*time.Second, "the events seen as fast-batch messages",
				func() bool { return batched.Load() == 604 })
		} else {
			require.NoError(t, nc.Flush())
			assert.Zero(t, batched.Load(), "no fast batch with WithFastBatches(false)")
		}
		s, err := js.Stream(ctx, publish.StreamName)
		require.NoError(t, err)
		var out []*jetstream.RawStreamMsg
		for seq := uint64(1); seq <= uint64(res.Published); seq++ {
			m, err := s.GetMsg(ctx, seq)
			require.NoError(t, err)
			out = append(out, m)
		}
		return out
	}
	want, got := stored(false), stored(true)
	require.Len(t, got, len(want))
	for i := range want {
		assert.Equal(t, want[i].Subject, got[i].Subject)
		assert.Equal(t, want[i].Header, got[i].Header, "event %d's headers", i)
		assert.Equal(t, string(want[i].Data), string(got[i].Data), "event %d's payload", i)
	}
}

// TestPublisher_FastBatchesTurnedOffOnStream: a stream that loses
// allow_batched after Setup fails one batch, whose events are then
// published one by one; the pages after it go one by one at once, without
// another failed batch.
func TestPublisher_FastBatchesTurnedOffOnStream(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var logs testlog.Buffer
	p, err := publish.New(js, prefix, publish.WithLogger(zerolog.New(&logs).Level(zerolog.DebugLevel)))
	require.NoError(t, err)
	require.NoError(t, p.Setup(ctx))
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.AllowBatchPublish = false
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	first, second := manyEvents(0, 50), manyEvents(50, 50)
	res, err := p.Publish(ctx, hitPage(o, first))
	require.NoError(t, err)
	assert.Equal(t, 100, res.Published+res.Duplicates)
	res, err = p.Publish(ctx, hitPage(o, second))
	require.NoError(t, err)
	assert.Equal(t, 100, res.Published)
	assert.Equal(t, append(pageIDs(first), pageIDs(second)...), storedIDs(t, js))
	assert.Equal(t, 1, strings.Count(logs.String(), "fast batch failed"), "one failed batch, then no more tries")
	assert.Equal(t, 1, strings.Count(logs.String(), "stream no longer takes fast batches"))
}
