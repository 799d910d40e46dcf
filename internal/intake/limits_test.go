package intake_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// bigRaw is XML of about n bytes, as full of '<', '>' and '&' as a real
// callback's plaintext.
func bigRaw(n int) string {
	var b strings.Builder
	b.WriteString("<xml>")
	for b.Len() < n {
		b.WriteString("<Item><Text><![CDATA[a > b && c < d]]></Text></Item>")
	}
	b.WriteString("</xml>")
	return b.String()
}

func TestStore_RecordSize(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithMaxMsgSize(intake.RecordLimit(64<<10)))
	cb := testCallback("big-1")
	cb.Raw = bigRaw(60 << 10)
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))

	st, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)
	msg, err := st.GetLastMsgForSubject(ctxTimeout(t, 5*time.Second), intake.Subject(prefix, cb.App, cb.Kind))
	require.NoError(t, err)
	// HTML escaping made such a record 4.5 times its raw size; now only
	// the other fields and JSON's quotes are added.
	ratio := float64(len(msg.Data)) / float64(len(cb.Raw))
	t.Logf("record %d bytes for %d bytes of raw (%.3fx)", len(msg.Data), len(cb.Raw), ratio)
	assert.Less(t, ratio, 1.05, "record %d bytes for %d bytes of raw", len(msg.Data), len(cb.Raw))
	assert.Contains(t, string(msg.Data), "<Item><Text><![CDATA[a > b && c < d]]>")
	var got wecomhit.Callback
	require.NoError(t, json.Unmarshal(msg.Data, &got))
	assert.Equal(t, cb.Raw, got.Raw)
}

func TestStore_Full(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithMaxBytes(1<<20))
	info := streamInfo(t, js)
	assert.Equal(t, jetstream.DiscardNew, info.Config.Discard)
	assert.Equal(t, int64(1<<20), info.Config.MaxBytes)

	raw := bigRaw(100 << 10)
	var err error
	stored := 0
	for i := range 20 {
		cb := testCallback(fmt.Sprintf("full-%d", i))
		cb.Raw = raw
		if err = s.Store(ctxTimeout(t, 5*time.Second), cb); err != nil {
			break
		}
		stored++
	}
	require.Error(t, err, "1 MiB took 20 records of 100 KiB")
	assert.ErrorIs(t, err, intake.ErrStoreFull)
	assert.NotContains(t, err.Error(), secretToken)
	// Nothing stored was dropped to make room.
	info = streamInfo(t, js)
	assert.Equal(t, uint64(1), info.State.FirstSeq)
	assert.Equal(t, uint64(stored), info.State.Msgs)
}

func TestRecordLimit(t *testing.T) {
	// The record of the largest valid body must fit: a body's plaintext
	// is shorter than the body.
	raw := strings.Repeat("\xff", 48<<10) // 3/4 of 64 KiB, invalid UTF-8: the worst case for JSON
	cb := testCallback("x")
	cb.Raw = raw
	data, err := json.Marshal(cb)
	require.NoError(t, err)
	assert.Less(t, len(data), int(intake.RecordLimit(64<<10)))
}

// TestStore_SetupBoundsExistingStream: a stream made by an earlier version
// (no size limit, discarding old records) takes the limits in place,
// keeping its records.
func TestStore_SetupBoundsExistingStream(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	old := mustSetup(t, js)
	_, err := js.UpdateStream(ctxTimeout(t, 5*time.Second), jetstream.StreamConfig{
		Name: intake.StreamName, Subjects: []string{prefix + ".callback.>"}, Storage: jetstream.FileStorage,
		Discard: jetstream.DiscardOld, MaxAge: intake.DefaultMaxAge, Duplicates: intake.DefaultDuplicateWindow,
	})
	require.NoError(t, err)
	require.NoError(t, old.Store(ctxTimeout(t, 5*time.Second), testCallback("kept")))

	mustSetup(t, js, intake.WithMaxBytes(1<<20), intake.WithMaxMsgSize(intake.RecordLimit(64<<10)))
	info := streamInfo(t, js)
	assert.Equal(t, jetstream.DiscardNew, info.Config.Discard)
	assert.Equal(t, int64(1<<20), info.Config.MaxBytes)
	assert.Equal(t, intake.RecordLimit(64<<10), info.Config.MaxMsgSize)
	assert.Equal(t, uint64(1), info.State.Msgs)
}
