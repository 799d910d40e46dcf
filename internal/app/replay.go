package app

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// DLQEntry is a dead letter as `receiver dlq list` and the admin API show
// it: everything but the record,
// which for a callback holds its token and decrypted body.
type DLQEntry struct {
	Seq          uint64        `json:"seq"`
	Subject      string        `json:"subject"`
	Kind         string        `json:"kind"`
	Reason       string        `json:"reason"`
	Error        string        `json:"error"`
	App          string        `json:"app"`
	CorpID       string        `json:"corp_id"`
	CallbackKind wecomhit.Kind `json:"callback_kind,omitempty"`
	Source       string        `json:"source,omitempty"`
	DeadAt       time.Time     `json:"dead_at"`
	Deliveries   int           `json:"deliveries"`
}

// NewDLQEntry is e without its record.
func NewDLQEntry(e *deadletter.Entry) DLQEntry {
	return DLQEntry{
		Seq: e.Seq, Subject: e.Subject, Kind: e.Kind, Reason: e.Reason, Error: e.Error,
		App: e.App, CorpID: e.CorpID, CallbackKind: e.CallbackKind, Source: e.Source,
		DeadAt: e.DeadAt, Deliveries: e.Deliveries,
	}
}

// Results of replaying one dead letter.
const (
	ReplayReplayed = "replayed"  // stored for handling; the receiver removes the dead letter once it is handled
	ReplayNotFound = "not_found" // no dead letter at that sequence (replayed already, or aged out)
	ReplaySkipped  = "skipped"   // not a callback that can be replayed; kept
	ReplayFailed   = "failed"    // storing failed; kept, try again
)

// ReplayResult is what replaying one dead letter did.
type ReplayResult struct {
	Seq    uint64 `json:"seq"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Replayer stores callback dead letters again in WECOM_CALLBACKS; the
// dlq command and the admin API share it.
type Replayer struct {
	intake *intake.Store
	dlq    *deadletter.Stream
}

// NewReplayer replays dlq's callback dead letters into in.
func NewReplayer(in *intake.Store, dlq *deadletter.Stream) *Replayer {
	return &Replayer{intake: in, dlq: dlq}
}

// ReplaySeqs replays the dead letters at seqs, one result each.
func (r *Replayer) ReplaySeqs(ctx context.Context, seqs []uint64) ([]ReplayResult, error) {
	out := make([]ReplayResult, 0, len(seqs))
	for _, seq := range seqs {
		gctx, cancel := context.WithTimeout(ctx, ReplayTimeout)
		e, err := r.dlq.Get(gctx, seq)
		cancel()
		switch {
		case errors.Is(err, deadletter.ErrNotFound):
			out = append(out, ReplayResult{Seq: seq, Result: ReplayNotFound})
			continue
		case err != nil && e.Seq == 0:
			return out, err
		}
		out = append(out, r.replay(ctx, &e))
	}
	return out, nil
}

// ReplayMatching replays every dead letter f selects, one result each.
func (r *Replayer) ReplayMatching(ctx context.Context, f deadletter.Filter) ([]ReplayResult, error) {
	lctx, cancel := context.WithTimeout(ctx, ListTimeout)
	entries, err := r.dlq.List(lctx, f)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make([]ReplayResult, 0, len(entries))
	for i := range entries {
		out = append(out, r.replay(ctx, &entries[i]))
	}
	return out, nil
}

// replay stores one callback dead letter again. The message id, the
// callback's id and the dead letter's sequence, is new to the duplicate
// window, yet the same when a replay is repeated, so the repeat stores
// nothing twice. The receiver removes the dead letter once the replayed
// record has ended (handled, or dead anew under a new sequence): the
// operator's NATS role may not delete stored messages, and the dead letter
// stays listed until the replay has really been handled.
func (r *Replayer) replay(ctx context.Context, e *deadletter.Entry) ReplayResult {
	res := ReplayResult{Seq: e.Seq}
	switch {
	case e.Kind == wecomhit.DeadLetterHit:
		res.Result, res.Detail = ReplaySkipped, "a hit record is not a callback: fix the cause, then run backfill for the corp"
		return res
	case e.Kind != wecomhit.DeadLetterCallback || e.Reason == wecomhit.ReasonBadRecord:
		res.Result, res.Detail = ReplaySkipped, "not a callback record that can be handled"
		return res
	}
	var cb struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(e.Record, &cb); err != nil || cb.ID == "" {
		res.Result, res.Detail = ReplaySkipped, "the record has no callback id"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, ReplayTimeout)
	defer cancel()
	msgID := cb.ID + "/replay/" + strconv.FormatUint(e.Seq, 10)
	if err := r.intake.Restore(ctx, e.Record, msgID, e.Seq); err != nil {
		res.Result, res.Detail = ReplayFailed, err.Error()
		if errors.Is(err, intake.ErrInvalidRecord) {
			res.Result = ReplaySkipped
		}
		return res
	}
	res.Result = ReplayReplayed
	return res
}

// Timeouts of the dead-letter commands' NATS calls: a refused request (a role
// without the right) gets no answer, and must not hang the command.
const (
	ListTimeout   = 30 * time.Second
	ReplayTimeout = 10 * time.Second
)
