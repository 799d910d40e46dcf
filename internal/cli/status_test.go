package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/health"
)

// TestPrintStatus_MissingConsumers: the callbacks line names the intake
// consumers that do not exist, whose callbacks no count includes.
func TestPrintStatus_MissingConsumers(t *testing.T) {
	rep := health.Report{Intake: health.Intake{Waiting: 2, MissingConsumers: []string{"receiver", "receiver-tickets"}}}
	rep.Verdict = health.Judge(rep, health.DefaultThresholds())
	var out bytes.Buffer
	require.NoError(t, printStatus(Env{Stdout: &out}, rep, -1))
	assert.Contains(t, out.String(), "STALLED: intake consumer receiver does not exist")
	assert.Contains(t, out.String(), "callbacks:    2 waiting, 0 being handled, oldest unhandled none; no consumer receiver, receiver-tickets\n")

	rep.Intake.MissingConsumers = nil
	out.Reset()
	require.NoError(t, printStatus(Env{Stdout: &out}, rep, -1))
	assert.Contains(t, out.String(), "callbacks:    2 waiting, 0 being handled, oldest unhandled none\n")
}
