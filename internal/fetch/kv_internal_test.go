package fetch

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
)

func TestCasConflict(t *testing.T) {
	for _, err := range []error{
		jetstream.ErrKeyExists,
		jetstream.ErrKeyRevisionMismatch,
		fmt.Errorf("wrapped: %w", jetstream.ErrKeyExists),
		&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence},
		// What a replicated bucket answers, unmapped on some nats.go paths.
		&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant},
	} {
		assert.True(t, casConflict(err), "%v", err)
	}
	for _, err := range []error{nil, errors.New("timeout"), &jetstream.APIError{Code: 503, ErrorCode: 10008}} {
		assert.False(t, casConflict(err), "%v", err)
	}
}
