package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// TestPublisher_Headers: every event carries the documented headers, the
// CloudEvents ones named and encoded as the NATS protocol binding says.
func TestPublisher_Headers(t *testing.T) {
	nc, _, p := setup(t)
	got := collect(t, nc, prefix+".hit.>")
	fetched := time.Date(2026, 11, 21, 5, 40, 0, 123456789, time.UTC)
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourcePoll, UsedHitToken: true, FetchedAt: fetched}
	_, err := p.Publish(context.Background(), hitPage(o, page()))
	require.NoError(t, err)

	seen := map[string]bool{}
	for _, m := range got(4) {
		var ev wecomhit.HitEvent
		require.NoError(t, json.Unmarshal(m.Data, &ev))
		id := publish.MsgID(ev.CorpID, ev.MsgID, ev.RuleID)
		seen[id] = true
		wantTime := fetched.Truncate(time.Millisecond).Format(time.RFC3339Nano)
		if ev.Message != nil {
			wantTime = time.Unix(ev.Message.SendTime, 0).UTC().Format(time.RFC3339)
		}
		ceID, ceSubject := id, ev.RuleID
		if ev.MsgID == "m2" { // its rule id has a space: percent-encoded in ce-* headers only
			ceID, ceSubject = "wwCorp:m2:rule.with*odd>%20chars", "rule.with*odd>%20chars"
		}
		assert.Equal(t, nats.Header{
			"Nats-Msg-Id":          {id},
			"Nats-Expected-Stream": {publish.StreamName},
			"Content-Type":         {"application/json"},
			"Wecom-Schema":         {"wecom.hit.v1"},
			"Wecom-Corp-Id":        {ev.CorpID},
			"Wecom-Msg-Id":         {ev.MsgID},
			"Wecom-Rule-Id":        {ev.RuleID},
			"Wecom-Source":         {"poll"},
			"Wecom-Used-Hit-Token": {"true"},
			"ce-specversion":       {"1.0"},
			"ce-id":                {ceID},
			"ce-source":            {"urn:wecomhit:corp:wwCorp"},
			"ce-type":              {"wecom.hit.v1"},
			"ce-time":              {wantTime},
			"ce-subject":           {ceSubject},
			"ce-dataschema":        {"https://github.com/wecomhit/wecomhit/docs/hit-event.schema.json"},
			"ce-datacontenttype":   {"application/json"},
		}, m.Header, id)
	}
	assert.Len(t, seen, 4)
}

// TestCloudEvents_GoSDK reads live events through the CloudEvents Go SDK's
// NATS JetStream binding, as a consumer that knows nothing of this project
// would, and gets every attribute, datacontenttype included, with the data
// equal to the plain event: through the binding's receiver (a push
// consumer), and from a pull consumer through the binding's message type
// (the way open to the consumer role, docs/events.md).
func TestCloudEvents_GoSDK(t *testing.T) {
	nc, js, p := setup(t)
	fetched := time.Date(2026, 11, 21, 5, 40, 0, 123456789, time.UTC)
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, UsedHitToken: true, FetchedAt: fetched}
	_, err := p.Publish(context.Background(), hitPage(o, page()))
	require.NoError(t, err)

	// The plain events, as the stream holds them.
	plain := map[string][]byte{}
	s, err := js.Stream(context.Background(), publish.StreamName)
	require.NoError(t, err)
	for seq := uint64(1); seq <= 4; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		require.NoError(t, err)
		assert.Equal(t, publish.StreamName, m.Header.Get("Nats-Expected-Stream"), "the stream keeps the publisher's guard header")
		plain[m.Header.Get(publish.HeaderMsgID)+"/"+m.Header.Get(publish.HeaderRuleID)] = m.Data
	}

	consumer, err := cejs.NewConsumerFromConn(nc, publish.StreamName, prefix+".hit.>", nil,
		[]nats.SubOpt{nats.BindStream(publish.StreamName), nats.DeliverAll(), nats.AckNone()})
	require.NoError(t, err)
	client, err := cloudevents.NewClient(consumer)
	require.NoError(t, err)
	var (
		mu     sync.Mutex
		events []cloudevents.Event
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- client.StartReceiver(ctx, func(e cloudevents.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = consumer.Close(context.Background())
	})
	natstest.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(events) < 4 {
			return fmt.Errorf("the SDK read %d of 4 events", len(events))
		}
		return nil
	})

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, events, 4)

	// The way docs/events.md shows the consumer role, whose messages only
	// pull consumers get: pulled, and turned into events by the binding's
	// message type.
	cons, err := s.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var pulled []cloudevents.Event
	for m := range batch.Messages() {
		e, err := binding.ToEvent(context.Background(), cejs.NewMessage(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}))
		require.NoError(t, err)
		pulled = append(pulled, *e)
	}
	require.NoError(t, batch.Error())
	require.Len(t, pulled, 4)

	for _, e := range append(events, pulled...) {
		require.NoError(t, e.Validate())
		var ev wecomhit.HitEvent
		require.NoError(t, json.Unmarshal(e.Data(), &ev))
		key := ev.MsgID + "/" + ev.RuleID
		require.Contains(t, plain, key)
		assert.Equal(t, plain[key], e.Data(), "data is the plain event, byte for byte")

		// The SDK does not percent-decode header values; the binding says
		// a reader must. Plain ids come through as they are.
		id, err := url.PathUnescape(e.ID())
		require.NoError(t, err)
		subject, err := url.PathUnescape(e.Subject())
		require.NoError(t, err)
		assert.Equal(t, "1.0", e.SpecVersion())
		assert.Equal(t, publish.MsgID(ev.CorpID, ev.MsgID, ev.RuleID), id)
		assert.Equal(t, "urn:wecomhit:corp:wwCorp", e.Source())
		assert.Equal(t, "wecom.hit.v1", e.Type())
		assert.Equal(t, ev.RuleID, subject)
		assert.Equal(t, publish.HitDataSchema, e.DataSchema())
		assert.Equal(t, "application/json", e.DataContentType())
		if ev.Message != nil {
			assert.Equal(t, time.Unix(ev.Message.SendTime, 0).UTC(), e.Time().UTC(), "time: when the message was sent")
		} else {
			assert.Equal(t, ev.FetchedAt, e.Time().UTC(), "time: when it was fetched, if WeCom gave no send time")
		}
		if ev.RuleID != "rule.with*odd> chars" {
			assert.Equal(t, id, e.ID(), "a plain id needs no decoding")
		}
		assert.Empty(t, e.Extensions(), "no header becomes a stray extension")
	}
}
