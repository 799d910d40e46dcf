package publish_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// TestPublisher_Full: a full WECOM_HITS fails the page (so the fetch keeps
// its cursor) and drops nothing stored, unless DiscardOld is chosen.
func TestPublisher_Full(t *testing.T) {
	// bigPage is n messages of one rule with about 20 KiB of detail each.
	bigPage := func(from, n int) []wecomhit.HitMessage {
		msgs := make([]wecomhit.HitMessage, n)
		for i := range msgs {
			msgs[i] = wecomhit.HitMessage{MsgID: fmt.Sprintf("m%d", from+i),
				HitRules: []wecomhit.HitRule{{RuleID: "r1", HasHitKeyword: true}},
				Detail: &wecomhit.MsgDetail{ChatID: fmt.Sprintf("%020000d", from+i), SendTime: 1717000000, MsgType: 1,
					Sender: wecomhit.Party{Type: 1, ID: "u1"}}}
		}
		return msgs
	}
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	for _, tt := range []struct {
		name       string
		discardOld bool
	}{{"DiscardNew", false}, {"DiscardOld", true}} {
		t.Run(tt.name, func(t *testing.T) {
			_, js := natstest.Connect(t, natstest.RunServer(t))
			p, err := publish.New(js, prefix, publish.WithMaxBytes(1<<20), publish.WithMaxMsgSize(64<<10), publish.WithDiscardOld(tt.discardOld))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			require.NoError(t, p.Setup(ctx))
			st, err := js.Stream(ctx, publish.StreamName)
			require.NoError(t, err)
			cfg := st.CachedInfo().Config
			assert.Equal(t, int64(1<<20), cfg.MaxBytes)
			assert.Equal(t, int32(64<<10), cfg.MaxMsgSize)

			_, err = p.Publish(ctx, hitPage(o, bigPage(0, 40))) // ~800 KiB
			require.NoError(t, err)
			_, err = p.Publish(ctx, hitPage(o, bigPage(40, 40)))
			info, ierr := st.Info(ctx)
			require.NoError(t, ierr)
			if tt.discardOld {
				assert.Equal(t, jetstream.DiscardOld, cfg.Discard)
				require.NoError(t, err, "old events make room")
				assert.Greater(t, info.State.FirstSeq, uint64(1), "the oldest events went")
				return
			}
			assert.Equal(t, jetstream.DiscardNew, cfg.Discard)
			require.Error(t, err, "a full stream fails the page")
			assert.Equal(t, uint64(1), info.State.FirstSeq, "nothing stored was dropped")
		})
	}
}
