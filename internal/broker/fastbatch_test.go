package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestFastReply: a reply subject names its batch, seq, op and flow where
// nats-server reads them, and FastBatchID reads the id back.
func TestFastReply(t *testing.T) {
	id := nuid.Next()
	prefix := broker.FastReplyPrefix("_INBOX.abc", id, 500)
	assert.Equal(t, "_INBOX.abc."+id+".500.fail.", prefix)

	for _, c := range []struct {
		seq, n uint64
		op     broker.FastOp
		want   string
	}{
		{1, 3, broker.FastStart, "1.0.$FI"},
		{2, 3, broker.FastAppend, "2.1.$FI"},
		{3, 3, broker.FastCommit, "3.2.$FI"},
		{1, 1, broker.FastCommit, "1.2.$FI"},
		{12345678901, 12345678902, broker.FastAppend, "12345678901.1.$FI"},
	} {
		assert.Equal(t, c.op, broker.FastOpAt(c.seq, c.n), "op of %d of %d", c.seq, c.n)
		reply := string(broker.AppendFastReply([]byte("junk"), prefix, c.seq, c.op))
		assert.Equal(t, "junk"+prefix+c.want, reply, "appended to what dst held")
		assert.Equal(t, id, broker.FastBatchID(reply[len("junk"):]))
	}

	for _, s := range []string{"", "$FI", ".$FI", "a.b.c.$FI", "_INBOX.x.id.10.fail.1.0", "_INBOX.x.id.10.fail.1.0.$FIX"} {
		assert.Empty(t, broker.FastBatchID(s), "not a fast batch reply: %q", s)
	}
	assert.Equal(t, "id", broker.FastBatchID("id.10.fail.1.0.$FI"), "an inbox of no token")
}

// TestReadFastAnswer: each answer the server sends (the shapes of
// nats-server's BatchFlowAck, BatchFlowGap, BatchFlowErr and PubAck) is
// classified by the settlement rule: only a clean PubAck of this batch and
// stream settles messages, and only as many as it counts.
func TestReadFastAnswer(t *testing.T) {
	const id, stream, sent = "B1", "S", 5
	for _, c := range []struct {
		name   string
		answer string
		end    broker.FastEnd
		stored uint64
		none   bool
		err    string // "" for no error
	}{
		{"FlowAck", `{"type":"ack","seq":3,"msgs":10}`, broker.FastOpen, 0, false, ""},
		{"FullCount", `{"stream":"S","seq":42,"batch":"B1","count":5}`, broker.FastStored, 5, false, ""},
		{"DuplicateOnly", `{"stream":"S","seq":0,"batch":"B1","count":5}`, broker.FastStored, 5, true, ""},
		{"ShortCount", `{"stream":"S","seq":40,"batch":"B1","count":3}`, broker.FastStored, 3, false, "ended at message 3 of 5 sent"},
		{"Gap", `{"type":"gap","last_seq":2,"seq":4}`, broker.FastGap, 0, false, "message 2 lost, at 4"},
		{"Err", `{"type":"err","seq":3,"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}`,
			broker.FastRejected, 0, false, "message 3: "},
		{"ErrWithoutError", `{"type":"err","seq":3}`, broker.FastRejected, 0, false, "message 3 refused"},
		{"ErrorPubAck", `{"stream":"S","error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}`,
			broker.FastRejected, 0, false, "maximum bytes exceeded"},
		{"Disabled", `{"error":{"code":400,"err_code":10205,"description":"batch publish is disabled"}}`,
			broker.FastDisabled, 0, false, "batch publish is disabled"},
		{"Unparsable", `no responders`, broker.FastInvalid, 0, false, "invalid fast batch answer"},
		{"Empty", ``, broker.FastInvalid, 0, false, "invalid fast batch answer"},
		{"UnknownType", `{"type":"hello"}`, broker.FastInvalid, 0, false, `of type "hello"`},
		{"OtherBatch", `{"stream":"S","seq":42,"batch":"B2","count":5}`, broker.FastInvalid, 0, false, `batch "B2"`},
		{"OtherStream", `{"stream":"T","seq":42,"batch":"B1","count":5}`, broker.FastInvalid, 0, false, `stream "T"`},
		{"NoCount", `{"stream":"S","seq":42,"batch":"B1"}`, broker.FastInvalid, 0, false, "count 0 of 5"},
		{"CountPastSent", `{"stream":"S","seq":42,"batch":"B1","count":6}`, broker.FastInvalid, 0, false, "count 6 of 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := broker.ReadFastAnswer([]byte(c.answer), id, stream, sent)
			assert.Equal(t, c.end, v.End)
			assert.Equal(t, c.stored, v.Stored)
			assert.Equal(t, c.none, v.None)
			if c.err == "" {
				assert.NoError(t, v.Err)
				return
			}
			require.Error(t, v.Err)
			assert.Contains(t, v.Err.Error(), c.err)
			assert.Equal(t, c.end == broker.FastInvalid, errors.Is(v.Err, broker.ErrFastAnswer))
			var apiErr *jetstream.APIError
			assert.Equal(t, strings.Contains(c.answer, `"error"`), errors.As(v.Err, &apiErr), "the server's error, wrapped")
		})
	}
	v := broker.ReadFastAnswer([]byte(`{"type":"ack","seq":3,"msgs":10}`), id, stream, sent)
	assert.Equal(t, uint64(3), v.Acked)
	assert.Equal(t, uint16(10), v.Flow)
}

// fastServer is a real server with stream FAST on fast.> (cfg's limits,
// and allow_batched unless cfg is for a stream without it), and a reply
// subscription for batches.
func fastServer(t *testing.T, cfg jetstream.StreamConfig, batched bool) (*nats.Conn, string, chan *nats.Msg) {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	cfg.Name, cfg.Subjects, cfg.Duplicates, cfg.AllowBatchPublish = "FAST", []string{"fast.>"}, time.Minute, batched
	_, err := js.CreateStream(t.Context(), cfg)
	require.NoError(t, err)
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(inbox+".>", ch)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return nc, inbox, ch
}

// sendFast publishes a batch of the given payload sizes, numbering its
// messages with seqs (1..n when nil), ids from idFrom, and returns the
// first answer that is not a flow ack.
func sendFast(t *testing.T, nc *nats.Conn, inbox string, ch chan *nats.Msg, idFrom int, sizes []int, seqs []uint64) broker.FastVerdict {
	t.Helper()
	id := nuid.Next()
	prefix := broker.FastReplyPrefix(inbox, id, 65535)
	n := uint64(len(sizes))
	for i, size := range sizes {
		seq := uint64(i + 1)
		if seqs != nil {
			seq = seqs[i]
		}
		msgID := fmt.Sprintf("e%d", idFrom+i)
		m := &nats.Msg{Subject: "fast." + msgID, Data: []byte(strings.Repeat("x", size)),
			Header: nats.Header{jetstream.MsgIDHeader: {msgID}},
			Reply:  string(broker.AppendFastReply(nil, prefix, seq, broker.FastOpAt(uint64(i+1), n)))}
		require.NoError(t, nc.PublishMsg(m))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		select {
		case m := <-ch:
			require.Equal(t, id, broker.FastBatchID(m.Subject), "answered on the batch's reply subject")
			if v := broker.ReadFastAnswer(m.Data, id, "FAST", n); v.End != broker.FastOpen {
				return v
			}
		case <-ctx.Done():
			t.Fatal("no answer that ends the batch")
		}
	}
}

// TestReadFastAnswer_Server: the settlement rule on a real server's
// answers: a full count; a batch of duplicates only; a message the store
// refuses in mid-batch (its error comes first, nothing is settled); a
// missing message (a gap); a stream that does not allow fast batches.
func TestReadFastAnswer_Server(t *testing.T) {
	t.Run("FullCountAndDuplicates", func(t *testing.T) {
		nc, inbox, ch := fastServer(t, jetstream.StreamConfig{}, true)
		v := sendFast(t, nc, inbox, ch, 0, []int{10, 10, 10, 10}, nil)
		assert.Equal(t, broker.FastStored, v.End)
		assert.Equal(t, uint64(4), v.Stored)
		assert.False(t, v.None)
		require.NoError(t, v.Err)

		v = sendFast(t, nc, inbox, ch, 0, []int{10, 10, 10, 10}, nil)
		assert.Equal(t, broker.FastStored, v.End, "duplicates are skipped, not refused")
		assert.Equal(t, uint64(4), v.Stored)
		assert.True(t, v.None, "every one a duplicate")
		require.NoError(t, v.Err)

		v = sendFast(t, nc, inbox, ch, 2, []int{10, 10, 10}, nil)
		assert.Equal(t, broker.FastStored, v.End)
		assert.Equal(t, uint64(3), v.Stored)
		assert.False(t, v.None, "e4 is new")
	})
	t.Run("ErrBeforePubAck", func(t *testing.T) {
		nc, inbox, ch := fastServer(t, jetstream.StreamConfig{MaxBytes: 8 << 10, Discard: jetstream.DiscardNew}, true)
		v := sendFast(t, nc, inbox, ch, 0, []int{1000, 1000, 20000, 10, 10}, nil)
		assert.Equal(t, broker.FastRejected, v.End, "the refusal decides, not the PubAck after it")
		assert.Zero(t, v.Stored)
		require.Error(t, v.Err)
		assert.Contains(t, v.Err.Error(), "maximum bytes exceeded")
	})
	t.Run("Gap", func(t *testing.T) {
		nc, inbox, ch := fastServer(t, jetstream.StreamConfig{}, true)
		v := sendFast(t, nc, inbox, ch, 0, []int{10, 10, 10}, []uint64{1, 3, 4})
		assert.Equal(t, broker.FastGap, v.End)
		assert.Zero(t, v.Stored)
		require.Error(t, v.Err)
	})
	t.Run("Disabled", func(t *testing.T) {
		nc, inbox, ch := fastServer(t, jetstream.StreamConfig{}, false)
		v := sendFast(t, nc, inbox, ch, 0, []int{10, 10}, nil)
		assert.Equal(t, broker.FastDisabled, v.End)
		assert.Zero(t, v.Stored)
	})
}
