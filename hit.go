package wecomhit

import "time"

// HitSchema is the schema name every hit event carries.
const HitSchema = "wecom.hit.v1"

// Sources of a hit event: what started the fetch that read it. Whether the
// fetch could use a hit token is a separate matter (HitEvent.UsedHitToken):
// a poll may find a live token, and a fetch a callback started may outlive it.
const (
	SourceCallback = "callback" // a hit_keyword or program_notify callback
	SourcePoll     = "poll"     // the periodic safety poll
	SourceBackfill = "backfill" // an operator's backfill from a start time
)

// HitMessage is one entry of get_hit_msg_list's msg_list, as WeCom returns
// it: a message and every rule it hit. The fetch stage reads these; the
// publish stage turns each (message, rule) into a HitEvent.
type HitMessage struct {
	MsgID    string     `json:"msgid"`
	Detail   *MsgDetail `json:"msg_detail,omitempty"`
	HitRules []HitRule  `json:"hit_rule_list"`
}

// MsgDetail is WeCom's msg_detail, present when need_detail was 1.
type MsgDetail struct {
	Sender             Party               `json:"sender"`
	ReceiverList       []Party             `json:"receiver_list"`
	ChatID             string              `json:"chatid"`
	SendTime           int64               `json:"send_time"`
	MsgType            int                 `json:"msgtype"`
	ServiceEncryptInfo *ServiceEncryptInfo `json:"service_encrypt_info,omitempty"`
}

// Party is a sender or receiver as WeCom identifies it: type 1 employee
// (open_userid), 2 external contact (external_userid), 3 robot.
type Party struct {
	Type int    `json:"type"`
	ID   string `json:"id"`
}

// ServiceEncryptInfo carries the message's key, encrypted with the public
// key registered under PublicKeyVer.
type ServiceEncryptInfo struct {
	EncryptedSecretKey string `json:"encrypted_secret_key"`
	PublicKeyVer       int    `json:"public_key_ver"`
}

// HitRule is one rule a message hit.
type HitRule struct {
	RuleID        string `json:"rule_id"`
	HasHitKeyword bool   `json:"has_hit_keyword"`
	SemanticsList []int  `json:"semantics_list"`
}

// HitEvent is what the receiver publishes on <prefix>.hit.<corp_id>.<rule_id>
// in the WECOM_HITS stream: one per (message, rule). docs/events.md is its
// contract and docs/hit-event.schema.json its JSON Schema.
type HitEvent struct {
	Schema        string     `json:"schema"`
	App           string     `json:"app"`
	CorpID        string     `json:"corp_id"`
	MsgID         string     `json:"msgid"`
	RuleID        string     `json:"rule_id"`
	RuleName      string     `json:"rule_name"`
	HasHitKeyword bool       `json:"has_hit_keyword"`
	Semantics     []Semantic `json:"semantics"`
	// Rules lists every rule this message hit, this event's rule included.
	Rules []RuleMatch `json:"rules"`
	// Message is absent when WeCom returned no msg_detail.
	Message *Message `json:"message,omitempty"`
	// Source is what started the fetch: SourceCallback, SourcePoll or
	// SourceBackfill.
	Source string `json:"source"`
	// UsedHitToken: the page was fetched with a callback's hit token (or
	// program_notify id) rather than token-less.
	UsedHitToken bool      `json:"used_hit_token"`
	FetchedAt    time.Time `json:"fetched_at"`
}

// RuleMatch is one rule a message hit, with its name when known.
type RuleMatch struct {
	RuleID        string     `json:"rule_id"`
	RuleName      string     `json:"rule_name"`
	HasHitKeyword bool       `json:"has_hit_keyword"`
	Semantics     []Semantic `json:"semantics"`
}

// Semantic is a key behaviour (关键行为) by code and name.
type Semantic struct {
	Code int    `json:"code"`
	Name string `json:"name"`
}

// Message is the hit message's metadata; its content is not part of the
// event (fetch it with the message id and ServiceEncryptInfo).
type Message struct {
	MsgType            int          `json:"msgtype"`
	MsgTypeName        string       `json:"msgtype_name"`
	SendTime           int64        `json:"send_time"`
	Sender             NamedParty   `json:"sender"`
	Receivers          []NamedParty `json:"receivers"`
	ChatID             string       `json:"chat_id"`
	ServiceEncryptInfo *EncryptInfo `json:"service_encrypt_info,omitempty"`
}

// NamedParty is a Party with its type's name.
type NamedParty struct {
	Type     int    `json:"type"`
	TypeName string `json:"type_name"`
	ID       string `json:"id"`
}

// EncryptInfo is ServiceEncryptInfo in the event.
type EncryptInfo struct {
	EncryptedSecretKey string `json:"encrypted_secret_key"`
	PublicKeyVer       int    `json:"public_key_ver"`
}

// Unknown is the name of any code the receiver does not know; the code
// itself is kept.
const Unknown = "unknown"

// SemanticName names a semantics (关键行为) code.
func SemanticName(code int) string {
	switch code {
	case 1:
		return "red_packet"
	case 2:
		return "mobile"
	case 3:
		return "email"
	case 4:
		return "contact_card"
	case 5:
		return "qrcode_image"
	case 6:
		return "recall"
	case 7:
		return "bank_card"
	case 8:
		return "id_card"
	case 9:
		return "file"
	case 10:
		return "link"
	case 11:
		return "mini_program"
	case 12:
		return "welcome_msg"
	}
	return Unknown
}

// PartyTypeName names a sender or receiver type.
func PartyTypeName(t int) string {
	switch t {
	case 1:
		return "employee"
	case 2:
		return "external_contact"
	case 3:
		return "robot"
	}
	return Unknown
}

// MsgTypeName names a msgtype code. WeCom's full list is not published;
// these are the codes its documentation and examples show.
func MsgTypeName(t int) string {
	switch t {
	case 1:
		return "text"
	case 2:
		return "image"
	case 4:
		return "link"
	case 5:
		return "mini_program"
	case 6:
		return "voice"
	case 8:
		return "file"
	case 9:
		return "card"
	case 13:
		return "red_packet"
	case 18:
		return "doc"
	case 20:
		return "mixed"
	case 21:
		return "audio"
	case 23:
		return "wedrive_file"
	}
	return Unknown
}

// HitPage is one fetched page of hit messages on its way from fetch to
// publish, with where it came from.
type HitPage struct {
	App    string
	CorpID string
	Source string // SourceCallback, SourcePoll or SourceBackfill: what started the fetch
	// UsedHitToken: the page was fetched with a hit token or notify id.
	UsedHitToken bool
	FetchedAt    time.Time
	Messages     []HitMessage
	// Skip lists the Nats-Msg-Ids (<corp_id>:<msgid>:<rule_id>) of events
	// not to publish because the stream holds them already (backfill).
	Skip map[string]bool
}

// PageResult counts what publishing a page did.
type PageResult struct {
	Published    int // new events stored
	Duplicates   int // events the stream already had (a re-fetched page)
	DeadLettered int // messages that could not become events, stored as dead letters
	Skipped      int // events left out because the page's Skip listed them
}

// Cursor is the fetch position of one (app, corp), as kept in the
// wecom_cursors KV bucket. It moves only after a page's events are acked.
type Cursor struct {
	App    string `json:"app"`
	CorpID string `json:"corp_id"`
	// Cursor is WeCom's opaque next_cursor; empty means "from the oldest
	// hit of the last 5 days".
	Cursor    string    `json:"cursor"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastHitTime is the send time (unix s) of the newest message fetched.
	LastHitTime int64 `json:"last_hit_time,omitempty"`
	// Pages and Events count what this cursor has moved over.
	Pages  int64 `json:"pages"`
	Events int64 `json:"events"`
}
