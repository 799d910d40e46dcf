package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
)

func TestSetLimit(t *testing.T) {
	errBad := errors.New("bad option")
	age := time.Hour
	require.NoError(t, broker.SetLimit(errBad, "WithMaxAge", 0, &age))
	assert.Equal(t, time.Hour, age, "zero keeps the default")
	require.NoError(t, broker.SetLimit(errBad, "WithMaxAge", 2*time.Hour, &age))
	assert.Equal(t, 2*time.Hour, age)
	err := broker.SetLimit(errBad, "WithMaxAge", -time.Second, &age)
	assert.ErrorIs(t, err, errBad)
	assert.EqualError(t, err, "bad option: WithMaxAge(-1s): negative")
	assert.Equal(t, 2*time.Hour, age, "unchanged by a refused value")

	replicas := 1
	require.NoError(t, broker.SetReplicas(errBad, "WithReplicas", 3, &replicas))
	assert.Equal(t, 3, replicas)
	assert.ErrorIs(t, broker.SetReplicas(errBad, "WithReplicas", 6, &replicas), errBad)
	assert.ErrorIs(t, broker.SetReplicas(errBad, "WithReplicas", -1, &replicas), errBad)
	assert.Equal(t, 3, replicas)
}
