package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// The client side of JetStream fast-ingest batches ("fast batches",
// nats-server 2.14 and later, stream setting allow_batched), in the one
// place both users read it: intake stores concurrent callbacks as one
// batch (group commit), publish sends a page's hit events as batches.
// What lives here is the wire protocol and the rule that says how much of
// a batch is stored; each user keeps its own policy: how it subscribes to
// the answers, how many batches it has in flight, how long it waits, and
// what it does with messages a batch did not store.
//
// How a batch travels. Every message of a batch is an ordinary publish on
// its own subject, with its own headers (a Nats-Msg-Id in both users'
// case, but intake's with an embedded server), and a reply subject that carries the batch:
//
//	<inbox>.<batch id>.<flow>.fail.<batch seq>.<op>.$FI
//
// batch seq counts from 1; op is 0 for the first message, 1 for the next
// ones and 2 for the last, which commits. The server reads the batch id
// as the token before flow and keys batches by it alone, across every
// publisher of the stream, so an id must be unique (a NUID). flow asks
// for a flow answer every so many messages. Gap mode "fail" makes the
// server end a batch at the first message it cannot take, rather than
// skip over it. Neither user sends the protocol's other operations: a
// commit without a message (op 3) and a ping (op 4) are messages on a
// subject of the stream, which plain NATS subscribers would receive,
// empty.
//
// The server answers on a message's reply subject (nats-server v2.15.3,
// server/stream.go, processJetStreamFastBatchMsg and
// processJetStreamMsgWithBatch; server/jetstream_batching.go):
//   - {"type":"ack","seq":s,"msgs":m}: flow control, after the first
//     message and then every m messages; with gap mode "fail", messages 1
//     to s are stored. It is not what a user settles on: only the PubAck
//     below is.
//   - {"type":"gap","last_seq":e,"seq":s}: message e never arrived (a full
//     ingest queue, a leader change); the batch ends.
//   - {"type":"err","seq":s,"error":{..}}: message s was refused (DiscardNew
//     limits, its size, an expected-stream header, a duplicate id another
//     publisher has in flight, ...); the batch ends.
//   - one PubAck-shaped answer that ends the batch,
//     {"stream":..,"seq":..,"batch":<id>,"count":c}, or an error
//     ({"error":{..}}: the store refused a message, or the stream does not
//     allow fast batches, err_code 10205).
//
// What the PubAck's count means, and why a user may call messages 1 to c
// stored. The server sends the count only once every message up to it has
// been stored (the last one after it was written, and on a replicated
// stream after a quorum applied it) or skipped as a duplicate of a record
// in the stream's duplicate window, the first message included, which is
// exactly what a plain publish acks with "duplicate". It does not say
// which were skipped; the PubAck's seq is the stream sequence of the last
// message the batch stored, 0 when it stored none. A message refused
// before it was proposed, or lost, ends the count before it: gap mode
// "fail" never skips over a hole. So with a clean PubAck the first count
// messages are in the stream; those after it are not, and a user sends
// them again (their Nats-Msg-Ids, if they have them, make that
// idempotent).
//
// One case the count does not cover: a message that passed the server's
// checks and then failed to be written is answered with an error of its
// own, and the commit may still report the full count. The server sends
// all of a batch's answers in order from one queue, so that error arrives
// before the PubAck; the settlement rule is therefore "the first answer
// that is not a flow ack decides": an err or gap answer, or an error
// PubAck, means nothing of the batch is known stored. A user whose
// subscription may drop messages (a slow consumer) must treat a drop
// while its batch was out as such an answer.
//
// What this rests on, beyond the checks above: NATS delivers at most once,
// so an error answer lost between two servers of a cluster (a route
// reconnecting between the error and the PubAck) would not show; and a
// write that fails for a reason the server does not answer at all (an I/O
// error, a full disk: a plain publish times out there, and the server
// marks the stream failed) is invisible to the count if the writes after
// it in the same batch succeed. The server decides DiscardNew limits
// before it proposes a message, so a proposed write does not fail for
// them on any replica.
//
// One spot is weaker than a plain publish, on replicated streams only: a
// message whose id another publisher has proposed but the stream has not
// yet applied is skipped as a duplicate inside a batch, where a plain
// publish gets an error (duplicate message conflict). If the batch's own
// messages before it are applied and the others' proposal is then lost
// with its leader, the message was counted for a record that the other
// publisher's retry still has to store. It takes the same id in flight
// twice at once and a leader lost within that moment. A single server
// (replicas 1) applies each message before it looks at the next, so it
// has no such window.
//
// Written here rather than taken from orbit.go's jetstreamext.FastPublisher
// (v0.3.2): that client is one batch per publisher (an inbox, a SUB and an
// UNSUB each, which BENCHMARKS.md measured as dearer per callback than one
// subscription for all batches), waits for the first message's answer
// before sending the rest, reports a message refused in mid-batch through
// an error callback on its own goroutine while its commit can still
// return a successful BatchAck counting fewer messages than were sent, so
// a caller must join the two to learn what is stored.

// FastOp is a fast batch message's operation, the reply subject's
// next-to-last token.
type FastOp uint8

// The operations this client sends.
const (
	FastStart  FastOp = 0 // the first message, batch seq 1
	FastAppend FastOp = 1 // a message after the first, not the last
	FastCommit FastOp = 2 // the last message, which commits the batch
)

// FastMaxFlow is the most messages the server lets pass between two flow
// answers, whatever flow a reply subject asks for.
const FastMaxFlow = 500

// FastBatchDisabled reports whether err is the server's answer that the
// stream does not allow fast batches (say, allow_batched was turned off
// on it after the caller looked).
func FastBatchDisabled(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeBatchDisabled
}

// errCodeBatchDisabled: the stream does not allow fast batches
// (nats-server's JSBatchPublishDisabledErr).
const errCodeBatchDisabled = 10205

// fastSuffix ends every fast batch reply subject.
const fastSuffix = ".$FI"

// FastReplyPrefix is the part of a batch's reply subjects before the batch
// seq: "<inbox>.<id>.<flow>.fail.". inbox is a subject the user
// subscribes to with ".>" appended; id is unique to the batch (a NUID);
// flow is how many messages the server may take between two flow answers.
func FastReplyPrefix(inbox, id string, flow int) string {
	return inbox + "." + id + "." + strconv.Itoa(flow) + ".fail."
}

// AppendFastReply appends to dst the reply subject of the batch's message
// seq (from 1), op its operation, prefix from FastReplyPrefix.
func AppendFastReply(dst []byte, prefix string, seq uint64, op FastOp) []byte {
	dst = append(dst, prefix...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, '.', '0'+byte(op))
	return append(dst, fastSuffix...)
}

// FastOpAt is the operation of message seq (from 1) of a batch of n.
func FastOpAt(seq, n uint64) FastOp {
	switch {
	case seq == n:
		return FastCommit
	case seq == 1:
		return FastStart
	}
	return FastAppend
}

// FastBatchID is the batch id in a fast batch reply subject: the sixth
// token from the end, "" if the subject is not one.
func FastBatchID(reply string) string {
	if !strings.HasSuffix(reply, fastSuffix) {
		return ""
	}
	end := len(reply)
	for range 5 {
		i := strings.LastIndexByte(reply[:end], '.')
		if i < 0 {
			return ""
		}
		end = i
	}
	return reply[strings.LastIndexByte(reply[:end], '.')+1 : end]
}

// FastEnd is what an answer says of its batch.
type FastEnd uint8

// The ends of a batch, as an answer tells them.
const (
	// FastOpen: a flow answer; the batch goes on.
	FastOpen FastEnd = iota
	// FastStored: a clean PubAck; FastVerdict.Stored messages, from the
	// first, are stored or were duplicates.
	FastStored
	// FastRejected: the server refused a message (an err answer, an
	// error PubAck).
	FastRejected
	// FastGap: the server lost a message of the batch.
	FastGap
	// FastDisabled: the stream does not allow fast batches.
	FastDisabled
	// FastInvalid: an answer that does not parse (a status message such
	// as no responders), is of an unknown type, or is a PubAck that is not
	// this batch's.
	FastInvalid
)

// FastVerdict is what one answer says of a batch.
type FastVerdict struct {
	End FastEnd
	// Acked and Flow, from a flow answer (FastOpen): messages 1 to Acked
	// are stored, and the server answers again after Flow more (0: as
	// before).
	Acked uint64
	Flow  uint16
	// Stored, with FastStored: how many messages, from the first, are in
	// the stream; at most the sent count given to ReadFastAnswer.
	Stored uint64
	// None, with FastStored: the batch stored no new message (every one it
	// covers was a duplicate).
	None bool
	// Err says why, for every end but FastOpen and a FastStored that
	// covers every message sent; it wraps the server's
	// *jetstream.APIError when there is one.
	Err error
}

// fastAnswer is any answer to a batch: a flow message (Type "ack", "gap"
// or "err") or, without Type, the PubAck that ends the batch.
type fastAnswer struct {
	Type string `json:"type"`
	// Seq: a flow ack's last stored batch seq, an error's or a gap's batch
	// seq, a PubAck's stream sequence.
	Seq uint64 `json:"seq"`
	// Msgs: a flow ack's interval.
	Msgs uint16 `json:"msgs"`
	// LastSeq: a gap's expected batch seq.
	LastSeq uint64              `json:"last_seq"`
	Error   *jetstream.APIError `json:"error"`
	Stream  string              `json:"stream"`
	Batch   string              `json:"batch"`
	// Count: a PubAck's batch seq of the last message it covers.
	Count uint64 `json:"count"`
}

// ErrFastAnswer is wrapped by FastVerdict.Err for an answer that is not
// one this batch can take (FastInvalid).
var ErrFastAnswer = errors.New("invalid fast batch answer")

// ReadFastAnswer classifies data, one answer on the reply subject of the
// batch id, which was to go to stream and of which sent messages have
// been published, by the settlement rule above. A user calls it for each
// answer in order and stops at the first whose End is not FastOpen.
func ReadFastAnswer(data []byte, id, stream string, sent uint64) FastVerdict {
	var a fastAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return FastVerdict{End: FastInvalid, Err: fmt.Errorf("%w: %w", ErrFastAnswer, err)}
	}
	switch a.Type {
	case "ack":
		return FastVerdict{End: FastOpen, Acked: a.Seq, Flow: a.Msgs}
	case "gap":
		return FastVerdict{End: FastGap, Err: fmt.Errorf("gap: message %d lost, at %d", a.LastSeq, a.Seq)}
	case "err":
		if a.Error == nil {
			return FastVerdict{End: FastRejected, Err: fmt.Errorf("message %d refused", a.Seq)}
		}
		return FastVerdict{End: FastRejected, Err: fmt.Errorf("message %d: %w", a.Seq, a.Error)}
	case "":
	default:
		return FastVerdict{End: FastInvalid, Err: fmt.Errorf("%w: of type %q", ErrFastAnswer, a.Type)}
	}
	switch {
	case a.Error != nil && a.Error.ErrorCode == errCodeBatchDisabled:
		return FastVerdict{End: FastDisabled, Err: a.Error}
	case a.Error != nil:
		return FastVerdict{End: FastRejected, Err: a.Error}
	case a.Stream != stream || a.Batch != id || a.Count == 0 || a.Count > sent:
		return FastVerdict{End: FastInvalid, Err: fmt.Errorf("%w: stream %q, batch %q, count %d of %d sent",
			ErrFastAnswer, a.Stream, a.Batch, a.Count, sent)}
	case a.Count < sent:
		return FastVerdict{End: FastStored, Stored: a.Count, None: a.Seq == 0,
			Err: fmt.Errorf("ended at message %d of %d sent", a.Count, sent)}
	}
	return FastVerdict{End: FastStored, Stored: a.Count, None: a.Seq == 0}
}
