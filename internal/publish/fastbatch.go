package publish

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// A page's events go to WECOM_HITS as JetStream fast batches
// (broker/fastbatch.go: the protocol, and why a batch's PubAck means its
// messages are stored): the server answers a batch with a flow ack every
// so many stored messages and one PubAck for its last, instead of a PubAck
// per event, which is what the per-event path spends most of its client
// and server time on.
//
// What publish adds to the protocol is its policy. A batch is a window of
// a page's events, sent as they are built, with at most two flow
// intervals unacknowledged; it has a reply subscription of its own (one
// per window of events, so its cost is spread over hundreds of them),
// read in order on the publishing goroutine. A batch is all or nothing: a
// nil error from commit means every event is in the stream; any other
// answer (an error, a gap, a PubAck counting fewer than were sent), no
// answer within fastAnswerTimeout, or ctx's end fails the batch, and the
// caller publishes the same events again the per-event way, which the
// Nats-Msg-Ids make idempotent.

const (
	// fastAnswerTimeout is the longest a batch waits for the server's
	// next answer (a lost flow ack, a leader change) before giving up.
	fastAnswerTimeout = 5 * time.Second
)

// fastBatch is one batch in flight, sent message by message as a page's
// events are built (add), so that the server stores the first while the
// rest are encoded, and ended by commit.
type fastBatch struct {
	nc        *nats.Conn
	id        string // the batch id, a NUID: its inbox's last token
	stream    string // the stream the batch goes to, as its PubAck names it
	prefix    string // reply subject up to the batch sequence
	sub       *nats.Subscription
	ch        chan *nats.Msg
	sent      uint64 // messages sent so far
	acked     uint64 // highest batch sequence the server reported stored
	flow      uint64 // the server's current flow ack interval
	committed bool   // the last message is sent
	// none: the final PubAck says the batch stored nothing, every
	// message a duplicate.
	none  bool
	reply []byte // the reply subject being built, reused
}

// newFastBatch starts a batch of at most maxMsgs messages to stream on
// nc, at most window unacknowledged at once. Its caller closes it.
func newFastBatch(nc *nats.Conn, stream string, maxMsgs, window int) (*fastBatch, error) {
	// The server acks every flow messages at most, and a batch stops at two
	// flow intervals unacknowledged: both within the window.
	flow := max(1, min(broker.FastMaxFlow, window/2))
	// The inbox's last token, a NUID, is the batch's id, so the reply
	// subjects are <inbox>.<flow>.fail.<seq>.<op>.$FI, all under the
	// batch's own subscription, <inbox>.>.
	inbox := nc.NewInbox()
	dot := strings.LastIndexByte(inbox, '.')
	id := inbox[dot+1:]
	b := &fastBatch{
		nc: nc, id: id, stream: stream, flow: uint64(flow),
		prefix: broker.FastReplyPrefix(inbox[:dot], id, flow),
		// Every message is answered at most once, but for the first (on
		// arrival and once stored) and one refused (an error, then the
		// PubAck of what came before): the channel holds every answer
		// there can be, so the client never drops one as a slow
		// consumer.
		ch: make(chan *nats.Msg, maxMsgs+4),
	}
	sub, err := nc.ChanSubscribe(inbox+".>", b.ch)
	if err != nil {
		return nil, fmt.Errorf("fast batch: subscribe: %w", err)
	}
	b.sub = sub
	return b, nil
}

// close ends the batch's subscription; what the server still holds of an
// unfinished batch, it drops after its batch timeout.
func (b *fastBatch) close() { _ = b.sub.Unsubscribe() }

// add sends m as the batch's next message and reads the answers that have
// come; it waits only when two flow intervals are unacknowledged. An error
// ends the batch. m may be reused once add returns: the connection has
// copied it.
func (b *fastBatch) add(ctx context.Context, m *nats.Msg) error {
	op := broker.FastAppend
	if b.sent == 0 {
		op = broker.FastStart
	}
	if err := b.send(m, op); err != nil {
		return err
	}
	for drained := false; !drained; {
		select {
		case a := <-b.ch:
			if _, err := b.answer(a); err != nil {
				return err
			}
		default:
			drained = true
		}
	}
	for b.sent-b.acked >= 2*b.flow {
		if _, err := b.await(ctx); err != nil {
			return err
		}
	}
	return nil
}

// commit sends m as the batch's last message and waits for the PubAck
// that ends it: nil once the server has stored every message (see above);
// allDup then reports that every one was a duplicate.
//
// The batch ends with a message, not with the protocol's commit without
// one (broker/fastbatch.go says why).
func (b *fastBatch) commit(ctx context.Context, m *nats.Msg) (allDup bool, err error) {
	b.committed = true
	if err := b.send(m, broker.FastCommit); err != nil {
		return false, err
	}
	for {
		done, err := b.await(ctx)
		if err != nil {
			return false, err
		}
		if done {
			return b.none, nil
		}
	}
}

// send publishes m as the batch's next message, op its operation.
func (b *fastBatch) send(m *nats.Msg, op broker.FastOp) error {
	b.sent++
	m.Reply = b.replySubject(b.sent, op)
	if err := b.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("fast batch: message %d: %w", b.sent, err)
	}
	return nil
}

// replySubject is the reply subject of the batch's message seq, op its
// operation.
func (b *fastBatch) replySubject(seq uint64, op broker.FastOp) string {
	b.reply = broker.AppendFastReply(b.reply[:0], b.prefix, seq, op)
	return string(b.reply)
}

// await waits for the next answer, for at most fastAnswerTimeout: a
// batch without news that long is given up (the caller publishes its
// events one by one), rather than pinged (broker/fastbatch.go says why
// not).
func (b *fastBatch) await(ctx context.Context) (done bool, err error) {
	t := time.NewTimer(fastAnswerTimeout)
	defer t.Stop()
	select {
	case m := <-b.ch:
		return b.answer(m)
	case <-t.C:
		return false, fmt.Errorf("fast batch: no answer in %s", fastAnswerTimeout)
	case <-ctx.Done():
		return false, fmt.Errorf("fast batch: %w", ctx.Err())
	}
}

// answer handles one answer from the server (broker.ReadFastAnswer);
// done reports the batch's PubAck covering every message, an error
// anything else that ends it.
func (b *fastBatch) answer(m *nats.Msg) (done bool, err error) {
	v := broker.ReadFastAnswer(m.Data, b.id, b.stream, b.sent)
	switch {
	case v.End == broker.FastOpen:
		b.acked = max(b.acked, v.Acked)
		if v.Flow > 0 {
			b.flow = uint64(v.Flow)
		}
		return false, nil
	case v.Err != nil:
		return false, fmt.Errorf("fast batch: %w", v.Err)
	case !b.committed:
		// Ended before its last message: the rest were never stored.
		return false, fmt.Errorf("fast batch: ended at message %d of %d sent, before the commit", v.Stored, b.sent)
	}
	b.none = v.None
	return true, nil
}
