package wecomhit

import "time"

// CorpEventSchema is the schema name every corp lifecycle event carries.
const CorpEventSchema = "wecom.corp.v1"

// Corp lifecycle event types; each is also the last subject token.
const (
	// CorpAuthorized: the receiver now serves the corp (its permanent code
	// is stored and every replica picks the corp up).
	CorpAuthorized = "authorized"
	// CorpCancelled: the corp removed the suite and the receiver deleted
	// what it held about it. A consumer must delete its own copies.
	CorpCancelled = "cancelled"
)

// Kinds of data a cancelled event's Deleted lists (docs/corps.md, "What
// cancel_auth deletes").
const (
	CorpDataPermanentCode   = "permanent_code"
	CorpDataAccessTokens    = "access_tokens"
	CorpDataCursor          = "cursor"
	CorpDataLeases          = "leases"
	CorpDataHitTokens       = "hit_tokens"
	CorpDataRuleNames       = "rule_names"
	CorpDataCallbackRecords = "callback_records"
	CorpDataHitEvents       = "hit_events"
	CorpDataDeadLetters     = "dead_letters"
	// CorpDataAuthorizedEvents: the corp's authorized events in
	// WECOM_CORP_EVENTS, which carry its name; deleted after the cancelled
	// event is published, which stays.
	CorpDataAuthorizedEvents = "authorized_events"
)

// CorpLifecycleEvent is published on <prefix>.corp.<corp_id>.authorized and
// <prefix>.corp.<corp_id>.cancelled when a corp starts or stops being
// served. docs/corps.md is the contract and docs/corp-event.schema.json its
// JSON Schema. It never carries a permanent code, an auth code or a token.
type CorpLifecycleEvent struct {
	// Schema is CorpEventSchema.
	Schema string `json:"schema"`
	// Type is CorpAuthorized or CorpCancelled.
	Type string `json:"type"`
	// App is the configured app (suite) the corp authorized.
	App string `json:"app"`
	// CorpID is the corp's id as WeCom names it for this suite.
	CorpID string `json:"corp_id"`
	// CorpName is the corp's name from the exchange; empty on cancelled
	// events, since the name is among the data deleted.
	CorpName string `json:"corp_name,omitempty"`
	// Cause says what led to the event: "create_auth", "reset_permanent_code"
	// or "config" for authorized, "cancel_auth" or "operator" for cancelled.
	Cause string `json:"cause"`
	// EventTime is WeCom's TimeStamp of the callback that caused the event;
	// absent for config seeds and operator actions.
	EventTime *time.Time `json:"event_time,omitempty"`
	// Deleted lists, on cancelled events, the kinds of data the receiver
	// deleted (e.g. "permanent_code", "hit_events"); see docs/corps.md.
	Deleted []string `json:"deleted,omitempty"`
	// PublishedAt is when the receiver published the event.
	PublishedAt time.Time `json:"published_at"`
}
