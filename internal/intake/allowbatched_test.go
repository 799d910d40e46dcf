package intake_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// requiredLevel is the JetStream API level a stream needs of every server
// that runs it, as nats-server records it in the stream's metadata. A
// server below that level (allow_batched needs 4: nats-server 2.14) runs
// the stream's replica offline, and servers from 2.12 on refuse a stream
// config with a field they do not know (strict mode).
func requiredLevel(t *testing.T, meta map[string]string) int {
	t.Helper()
	l, ok := meta["_nats.req.level"]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(l)
	require.NoError(t, err)
	return n
}

// TestStore_SetupWithoutBatching: a Store that does not batch leaves
// allow_batched off, on a new stream and on one a batching Store made,
// so that nats.callback_batching: false keeps WECOM_CALLBACKS runnable on
// nats-server before 2.14 (a cluster being upgraded, or rolled back).
func TestStore_SetupWithoutBatching(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	mustSetup(t, js, intake.WithBatching(false))
	info := streamInfo(t, js)
	assert.False(t, info.Config.AllowBatchPublish, "a new stream")
	assert.Less(t, requiredLevel(t, info.Config.Metadata), 4)

	mustSetup(t, js) // batching: the stream allows fast batches
	info = streamInfo(t, js)
	require.True(t, info.Config.AllowBatchPublish)
	require.Equal(t, 4, requiredLevel(t, info.Config.Metadata))

	s := mustSetup(t, js, intake.WithBatching(false))
	info = streamInfo(t, js)
	assert.False(t, info.Config.AllowBatchPublish, "an existing stream that allowed them")
	assert.Less(t, requiredLevel(t, info.Config.Metadata), 4)
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("after")))
}
