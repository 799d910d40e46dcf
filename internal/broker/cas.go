package broker

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// CASConflict reports whether err is a compare-and-set conflict on a KV
// key: the key exists already, or its revision moved since it was read.
// A single server and a replicated stream report these with different
// codes (10071, 10164), and nats.go maps them to ErrKeyExists or
// ErrKeyRevisionMismatch on some paths only (a Create that finds a deleted
// key and retries returns the raw API error), so all four are checked.
//
// It lives here, next to the connection, so that every package keeping
// state in a KV bucket (fetch, wecom, corps) reads a conflict the same way.
func CASConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
