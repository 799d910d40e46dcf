package wecomhit

import (
	"encoding/json"
	"time"
)

// DeadLetterSchema is the schema name every dead letter carries.
const DeadLetterSchema = "wecom.dlq.v2"

// Kinds of dead letter: what the record was.
const (
	// DeadLetterHit: a hit message fetched from WeCom that could not become
	// events. Record is the wecomhit.HitMessage as WeCom returned it.
	DeadLetterHit = "hit"
	// DeadLetterCallback: a stored callback that could not be handled.
	// Record is the wecomhit.Callback as intake stored it, so it can be
	// replayed; it holds the callback's token and raw plaintext.
	DeadLetterCallback = "callback"
)

// Reasons a record became a dead letter: stable, for machines (filters,
// metric labels, alerts). Error holds the words for people.
const (
	// ReasonUnknownApp: a callback for an app the configuration no longer has.
	ReasonUnknownApp = "unknown_app"
	// ReasonUnknownCorp: a callback for a corp no app is configured for,
	// such as one that authorized the suite before anyone added it here.
	ReasonUnknownCorp = "unknown_corp"
	// ReasonMaxDeliveries: handling failed on every allowed delivery.
	ReasonMaxDeliveries = "max_deliveries"
	// ReasonBadRecord: a stored callback record that is not a callback
	// (not JSON, or missing what every callback has).
	ReasonBadRecord = "bad_record"
	// ReasonPermanent: the handler said retrying cannot help, without a
	// more specific reason.
	ReasonPermanent = "permanent"
	// ReasonNormalizePrefix starts the reason of a hit record that could not
	// be normalized, e.g. "normalize:empty_msgid".
	ReasonNormalizePrefix = "normalize:"
)

// DeadLetter is what the receiver writes to the WECOM_DEAD_LETTERS stream,
// on <prefix>.dlq.hit.<corp_id> for hits and
// <prefix>.dlq.callback.<app>.<kind> for callbacks. docs/dead-letters.md is
// its contract and docs/dead-letter.schema.json its JSON Schema.
type DeadLetter struct {
	Schema string `json:"schema"`
	// Kind is DeadLetterHit or DeadLetterCallback.
	Kind string `json:"kind"`
	// Reason is one of the Reason constants (or ReasonNormalizePrefix and a
	// suffix).
	Reason string `json:"reason"`
	// Error describes the failure for people. It never holds a secret.
	Error string `json:"error"`
	// App is the configured app the record came through.
	App string `json:"app"`
	// CorpID is the corp the record concerns; may be empty for a callback
	// that names none.
	CorpID string `json:"corp_id"`
	// CallbackKind is the callback's kind (callback dead letters only).
	CallbackKind Kind `json:"callback_kind,omitempty"`
	// Source is how the hit page was fetched (hit dead letters only).
	Source string `json:"source,omitempty"`
	// DeadAt is when the record was given up.
	DeadAt time.Time `json:"dead_at"`
	// Deliveries is how many times the record was delivered to a handler
	// (callbacks); 0 for hits, which are dead-lettered on sight.
	Deliveries int `json:"deliveries"`
	// Record is the original record: a HitMessage for hits, a Callback for
	// callbacks, or a JSON string holding the stored bytes when a callback
	// record could not be decoded (ReasonBadRecord).
	Record json.RawMessage `json:"record"`
}
