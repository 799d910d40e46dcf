package wecomsim

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// A client may hold a connection to the simulator on which it never sent a
// request: net/http's Transport keeps the spare connection it dialled while
// concurrent requests raced for one. Close must not wait for it.
func TestSim_CloseWithUnusedConnection(t *testing.T) {
	s, err := New(Options{Seed: 1, MessageRate: -1,
		Zone: Zone{CorpID: testZone, CorpSecret: testZoneSc, ProgramID: testProg}}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, s.Start(natstest.Context(t), "127.0.0.1:0"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	// Well under the 5 s net/http would wait for the unused connection.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	assert.NoError(t, s.Close(ctx))
}
