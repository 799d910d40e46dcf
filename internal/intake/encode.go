package intake

import (
	"fmt"
	"strconv"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/jsonstr"
)

// appendRecord appends cb's JSON to dst: byte for byte what an
// encoding/json Encoder with HTML escaping off writes for it, without the
// trailing newline (TestAppendRecord and FuzzAppendRecord compare the two):
// field order, omitempty, escapes and all. It runs for every callback, where
// the Encoder's reflection, and the Encoder itself, were most of the cost of
// Store apart from the publish. A change to wecomhit.Callback must change
// both this and the tests' generator.
func appendRecord(dst []byte, cb *wecomhit.Callback) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = jsonstr.Append(dst, cb.ID, false)
	dst = append(dst, `,"app":`...)
	dst = jsonstr.Append(dst, cb.App, false)
	dst = append(dst, `,"kind":`...)
	dst = jsonstr.Append(dst, string(cb.Kind), false)
	dst = append(dst, `,"format":`...)
	dst = jsonstr.Append(dst, cb.Format, false)
	for _, f := range [...]struct{ key, v string }{
		{`,"corp_id":`, cb.CorpID},
		{`,"suite_id":`, cb.SuiteID},
		{`,"token":`, cb.Token},
		{`,"suite_ticket":`, cb.SuiteTicket},
		{`,"auth_code":`, cb.AuthCode},
		{`,"notify_id":`, cb.NotifyID},
	} {
		if f.v != "" {
			dst = append(dst, f.key...)
			dst = jsonstr.Append(dst, f.v, false)
		}
	}
	if cb.NotifyScene != 0 {
		dst = append(dst, `,"notify_scene":`...)
		dst = strconv.AppendInt(dst, int64(cb.NotifyScene), 10)
	}
	if cb.EventTime != 0 {
		dst = append(dst, `,"event_time":`...)
		dst = strconv.AppendInt(dst, cb.EventTime, 10)
	}
	dst = append(dst, `,"received_at":"`...)
	// AppendText is MarshalJSON without the quotes: RFC 3339 with
	// nanoseconds, and the same refusal of years outside 0-9999.
	dst, err := cb.ReceivedAt.AppendText(dst)
	if err != nil {
		return nil, fmt.Errorf("received_at: %w", err)
	}
	dst = append(dst, `","raw":`...)
	dst = jsonstr.Append(dst, cb.Raw, false)
	return append(dst, '}'), nil
}

// recordSize is the length of cb's record when its strings need no
// escapes: the field names, punctuation, a time and two numbers at their
// longest (at most 257 bytes), and the strings.
func recordSize(cb *wecomhit.Callback) int {
	return 260 + len(cb.ID) + len(cb.App) + len(cb.Kind) + len(cb.Format) + len(cb.CorpID) + len(cb.SuiteID) +
		len(cb.Token) + len(cb.SuiteTicket) + len(cb.AuthCode) + len(cb.NotifyID) + len(cb.Raw)
}
