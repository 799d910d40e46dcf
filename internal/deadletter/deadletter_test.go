package deadletter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

const prefix = "wecom"

// schema compiles docs/dead-letter.schema.json, the published contract.
func schema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../docs/dead-letter.schema.json")
	require.NoError(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("dead-letter.schema.json", doc))
	s, err := c.Compile("dead-letter.schema.json")
	require.NoError(t, err)
	return s
}

// produce makes real dead letters of both kinds, through the packages that
// write them: publish (hit records that cannot become events) and intake
// (callbacks rejected, failing to the last delivery, or unreadable).
func produce(t *testing.T, js jetstream.JetStream) *deadletter.Stream {
	t.Helper()
	dls, err := deadletter.New(js, prefix)
	require.NoError(t, err)
	pub, err := publish.New(js, prefix, publish.WithDeadLetters(dls))
	require.NoError(t, err)
	require.NoError(t, pub.Setup(natstest.Context(t)))
	_, err = pub.Publish(natstest.Context(t), &wecomhit.HitPage{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourcePoll, FetchedAt: time.Now(),
		Messages: []wecomhit.HitMessage{{MsgID: "m-no-rules"}, {MsgID: "", HitRules: []wecomhit.HitRule{{RuleID: "r1"}}}}})
	require.NoError(t, err)

	in, err := intake.New(js, prefix)
	require.NoError(t, err)
	require.NoError(t, in.Setup(natstest.Context(t)))
	for _, id := range []string{"unknown-corp", "failing"} {
		require.NoError(t, in.Store(natstest.Context(t), &wecomhit.Callback{
			ID: id, App: "archive", Kind: wecomhit.KindHitKeyword, CorpID: "wwOther", Token: "TOKEN-x",
			ReceivedAt: time.Now(), Raw: "<xml/>",
		}))
	}
	_, err = js.Publish(natstest.Context(t), prefix+".callback.archive.suite_ticket", []byte("not json"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- in.Consume(ctx, intake.HandlerFunc(func(_ context.Context, cb *wecomhit.Callback) error {
			if cb.ID == "unknown-corp" {
				return intake.Reject(wecomhit.ReasonUnknownCorp, errors.New("corp wwOther is not configured"))
			}
			return errors.New("WeCom said -1")
		}), intake.ConsumerOptions{MaxDeliver: 2, Backoff: []time.Duration{10 * time.Millisecond}, DeadLetters: dls})
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	natstest.WaitFor(t, 10*time.Second, func() error {
		n, err := dls.Count(natstest.Context(t), "")
		if err != nil {
			return err
		}
		if n < 5 {
			return fmt.Errorf("%d of 5 dead letters", n)
		}
		return nil
	})
	return dls
}

// TestSchema_RealDeadLetters: every dead letter the receiver writes, of
// either kind, is valid against docs/dead-letter.schema.json, and the
// schema rejects broken copies of them.
func TestSchema_RealDeadLetters(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	produce(t, js)
	sch := schema(t)
	st, err := js.Stream(natstest.Context(t), deadletter.StreamName)
	require.NoError(t, err)
	info, err := st.Info(natstest.Context(t))
	require.NoError(t, err)
	require.Equal(t, uint64(5), info.State.Msgs)
	byReason := map[string]map[string]any{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(natstest.Context(t), seq)
		require.NoError(t, err)
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(m.Data)))
		require.NoError(t, err)
		require.NoError(t, sch.Validate(doc), "%s", m.Data)
		var v map[string]any
		require.NoError(t, json.Unmarshal(m.Data, &v))
		byReason[v["reason"].(string)] = v
		assert.Equal(t, wecomhit.DeadLetterSchema, m.Header.Get(deadletter.HeaderSchema))
	}
	assert.ElementsMatch(t, []string{
		"normalize:no_hit_rules", "normalize:empty_msgid",
		wecomhit.ReasonUnknownCorp, wecomhit.ReasonMaxDeliveries, wecomhit.ReasonBadRecord,
	}, keys(byReason))

	hit, cb := byReason["normalize:no_hit_rules"], byReason[wecomhit.ReasonUnknownCorp]
	broken := []struct {
		name string
		base map[string]any
		edit func(map[string]any)
	}{
		{"UnknownKind", hit, func(v map[string]any) { v["kind"] = "event" }},
		{"UnknownReason", cb, func(v map[string]any) { v["reason"] = "because" }},
		{"HitWithCallbackReason", hit, func(v map[string]any) { v["reason"] = "unknown_corp" }},
		{"CallbackWithNormalizeReason", cb, func(v map[string]any) { v["reason"] = "normalize:empty_msgid" }},
		{"HitWithCallbackKind", hit, func(v map[string]any) { v["callback_kind"] = "hit_keyword" }},
		{"CallbackWithoutCallbackKind", cb, func(v map[string]any) { delete(v, "callback_kind") }},
		{"CallbackRecordNotObject", cb, func(v map[string]any) { v["record"] = "text" }},
		{"CallbackRecordWithoutID", cb, func(v map[string]any) { delete(v["record"].(map[string]any), "id") }},
		{"CallbackNeverDelivered", cb, func(v map[string]any) { v["deliveries"] = 0 }},
		{"DeadAtNotUTC", cb, func(v map[string]any) { v["dead_at"] = "2026-11-27T11:00:00+08:00" }},
		{"DeadAtNotATime", cb, func(v map[string]any) { v["dead_at"] = "yesterday" }},
		{"NoRecord", hit, func(v map[string]any) { delete(v, "record") }},
		{"ExtraField", hit, func(v map[string]any) { v["note"] = "x" }},
		{"OldSchema", hit, func(v map[string]any) { v["schema"] = "wecom.dlq.v1" }},
	}
	for _, tt := range broken {
		t.Run(tt.name, func(t *testing.T) {
			v := clone(t, tt.base)
			tt.edit(v)
			assert.Error(t, sch.Validate(v))
		})
	}
}

func keys(m map[string]map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// clone deep-copies a decoded JSON object (as the validator takes it).
func clone(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out))
	return out
}

// TestStream_ListGetDelete: filters select by kind, app, corp and reason;
// a deleted dead letter is gone for Get, Delete and List alike.
func TestStream_ListGetDelete(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	dls := produce(t, js)

	all, err := dls.List(natstest.Context(t), deadletter.Filter{})
	require.NoError(t, err)
	require.Len(t, all, 5)
	hits, err := dls.List(natstest.Context(t), deadletter.Filter{Kind: wecomhit.DeadLetterHit, CorpID: "wwCorp"})
	require.NoError(t, err)
	assert.Len(t, hits, 2)
	for _, e := range hits {
		assert.Equal(t, "wecom.dlq.hit.wwCorp", e.Subject)
	}
	cbs, err := dls.List(natstest.Context(t), deadletter.Filter{Kind: wecomhit.DeadLetterCallback, App: "archive"})
	require.NoError(t, err)
	assert.Len(t, cbs, 3)
	one, err := dls.List(natstest.Context(t), deadletter.Filter{Reason: wecomhit.ReasonMaxDeliveries})
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, 2, one[0].Deliveries)
	assert.Equal(t, "WeCom said -1", one[0].Error)
	limited, err := dls.List(natstest.Context(t), deadletter.Filter{Limit: 2})
	require.NoError(t, err)
	assert.Len(t, limited, 2)
	n, err := dls.Count(natstest.Context(t), wecomhit.DeadLetterCallback)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), n)

	// Replayed removes only the callback dead letter of the named callback.
	var rec struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(one[0].Record, &rec))
	require.NoError(t, dls.Replayed(natstest.Context(t), one[0].Seq, "another-callback"))
	require.NoError(t, dls.Replayed(natstest.Context(t), hits[0].Seq, rec.ID), "a hit dead letter is left alone")
	require.NoError(t, dls.Replayed(natstest.Context(t), 9999, rec.ID), "a missing one is no error")
	n, err = dls.Count(natstest.Context(t), "")
	require.NoError(t, err)
	require.Equal(t, uint64(5), n)

	e, err := dls.Get(natstest.Context(t), one[0].Seq)
	require.NoError(t, err)
	assert.Equal(t, one[0].DeadLetter.Reason, e.Reason)
	require.NoError(t, dls.Delete(natstest.Context(t), e.Seq))
	_, err = dls.Get(natstest.Context(t), e.Seq)
	assert.ErrorIs(t, err, deadletter.ErrNotFound)
	assert.ErrorIs(t, dls.Delete(natstest.Context(t), e.Seq), deadletter.ErrNotFound)
	all, err = dls.List(natstest.Context(t), deadletter.Filter{})
	require.NoError(t, err)
	assert.Len(t, all, 4)

	unknown, err := dls.List(natstest.Context(t), deadletter.Filter{Reason: wecomhit.ReasonUnknownCorp})
	require.NoError(t, err)
	require.Len(t, unknown, 1)
	cb := unknown[0]
	require.NoError(t, json.Unmarshal(cb.Record, &rec))
	require.NoError(t, dls.Replayed(natstest.Context(t), cb.Seq, rec.ID))
	_, err = dls.Get(natstest.Context(t), cb.Seq)
	assert.ErrorIs(t, err, deadletter.ErrNotFound)
}

// TestStream_Write: a dead letter written twice under one id is stored
// once; a bad one is refused with no side effect.
func TestStream_Write(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	dls, err := deadletter.New(js, prefix)
	require.NoError(t, err)
	require.NoError(t, dls.Setup(natstest.Context(t)))
	require.NoError(t, dls.Setup(natstest.Context(t)), "idempotent")
	dl := func() *wecomhit.DeadLetter {
		return &wecomhit.DeadLetter{Kind: wecomhit.DeadLetterCallback, Reason: wecomhit.ReasonUnknownApp,
			App: "a.b", CallbackKind: wecomhit.KindSuiteTicket, Deliveries: 1, Record: json.RawMessage(`{"id":"x"}`)}
	}
	require.NoError(t, dls.Write(natstest.Context(t), dl(), "callback:7"))
	require.NoError(t, dls.Write(natstest.Context(t), dl(), "callback:7"))
	all, err := dls.List(natstest.Context(t), deadletter.Filter{})
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Equal(t, "wecom.dlq.callback.a_b.suite_ticket", all[0].Subject, "tokens are sanitized")

	for name, bad := range map[string]func(*wecomhit.DeadLetter){
		"NoKind":    func(d *wecomhit.DeadLetter) { d.Kind = "" },
		"NoReason":  func(d *wecomhit.DeadLetter) { d.Reason = "" },
		"NoRecord":  func(d *wecomhit.DeadLetter) { d.Record = nil },
		"BadRecord": func(d *wecomhit.DeadLetter) { d.Record = json.RawMessage(`{`) },
	} {
		d := dl()
		bad(d)
		assert.ErrorIs(t, dls.Write(natstest.Context(t), d, "callback:"+name), deadletter.ErrInvalidRecord, name)
	}
	assert.ErrorIs(t, dls.Write(natstest.Context(t), dl(), "id\r\nX: y"), deadletter.ErrInvalidRecord)
	all, err = dls.List(natstest.Context(t), deadletter.Filter{})
	require.NoError(t, err)
	assert.Len(t, all, 1, "nothing stored for the refused ones")

	_, err = deadletter.New(js, "")
	assert.ErrorIs(t, err, deadletter.ErrInvalidOption)
	_, err = deadletter.New(js, prefix, deadletter.WithMaxAge(time.Hour), deadletter.WithDuplicateWindow(2*time.Hour))
	assert.ErrorIs(t, err, deadletter.ErrInvalidOption)
}

// TestStream_Full: a full stream refuses a new dead letter (the writer keeps
// its record) and drops none it holds.
func TestStream_Full(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	dls, err := deadletter.New(js, prefix, deadletter.WithMaxBytes(4096))
	require.NoError(t, err)
	require.NoError(t, dls.Setup(natstest.Context(t)))
	n := 0
	for ; n < 100 && err == nil; n++ {
		err = dls.Write(natstest.Context(t), &wecomhit.DeadLetter{Kind: wecomhit.DeadLetterHit, Reason: "normalize:no_hit_rules",
			App: "archive", CorpID: "wwCorp", Record: json.RawMessage(`{"msgid":"` + strings.Repeat("m", 500) + `"}`)},
			fmt.Sprintf("dlq:%d", n))
	}
	require.Error(t, err, "a full stream refuses")
	st, serr := js.Stream(natstest.Context(t), deadletter.StreamName)
	require.NoError(t, serr)
	info, serr := st.Info(natstest.Context(t))
	require.NoError(t, serr)
	assert.Equal(t, uint64(1), info.State.FirstSeq, "nothing stored was dropped")
	assert.Equal(t, uint64(n-1), info.State.Msgs)
}

// TestStream_WriteStreamAppearsLate: a dead letter written while its
// stream cannot answer (here it is set up a moment later, as while its
// leader is elected) is stored once the stream answers, within Write's
// deadline, rather than failing at nats.go's first give-up.
func TestStream_WriteStreamAppearsLate(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	dls, err := deadletter.New(js, prefix)
	require.NoError(t, err)
	set := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		set <- dls.Setup(natstest.Context(t))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, dls.Write(ctx, &wecomhit.DeadLetter{Kind: wecomhit.DeadLetterCallback, Reason: wecomhit.ReasonUnknownApp,
		App: "archive", CallbackKind: wecomhit.KindSuiteTicket, Deliveries: 1, Record: json.RawMessage(`{"id":"late"}`)}, "callback:late"))
	require.NoError(t, <-set)
	all, err := dls.List(natstest.Context(t), deadletter.Filter{})
	require.NoError(t, err)
	assert.Len(t, all, 1)
}
