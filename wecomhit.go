// Package wecomhit holds the domain types that the receiver's stages share
// (callback → intake → fetch → publish) and that consumer services import to
// read the records and events the receiver writes to NATS.
//
// It has no logic beyond naming and depends on the standard library only, so a
// consumer can import it without pulling in the receiver.
package wecomhit

import "time"

// Kind is the kind of a WeCom callback, as the receiver classifies it.
type Kind string

// The callback kinds the receiver knows. Anything else is KindUnknown and is
// kept with its raw plaintext rather than dropped.
const (
	// KindHitKeyword: a message hit a keyword rule; carries a hit token
	// (InfoType=hit_keyword, 会话存档接口授权 指令回调).
	KindHitKeyword Kind = "hit_keyword"
	// KindConversationNewMessage: new archived messages; its token is for
	// sync_msg, not for get_hit_msg_list.
	KindConversationNewMessage Kind = "conversation_new_message"
	// KindSuiteTicket: the suite ticket WeCom pushes every 10 minutes.
	KindSuiteTicket Kind = "suite_ticket"
	// KindProgramNotify: a zone program called spec_notify_app (Event=program_notify).
	KindProgramNotify Kind = "program_notify"
	// KindMsgAuditNotify: self-built archive "new messages exist" (Event=msgaudit_notify).
	KindMsgAuditNotify Kind = "msgaudit_notify"
	// KindCreateAuth: a corp installed the suite; carries a single-use
	// AuthCode to exchange for the corp's permanent code. The record has no
	// corp id: WeCom names the corp only in the exchange's answer.
	KindCreateAuth Kind = "create_auth"
	// KindChangeAuth: a corp changed what it grants the suite.
	KindChangeAuth Kind = "change_auth"
	// KindCancelAuth: a corp removed the suite; its data must be deleted.
	KindCancelAuth Kind = "cancel_auth"
	// KindResetPermanentCode: WeCom replaced a corp's permanent code; carries
	// an AuthCode to exchange for the new one.
	KindResetPermanentCode Kind = "reset_permanent_code"
	// KindUnknown: any other callback; stored with its raw plaintext.
	KindUnknown Kind = "unknown"
)

// Kinds lists every Kind, KindUnknown last. Useful for pre-creating metric
// series and validating subjects.
var Kinds = [...]Kind{
	KindHitKeyword, KindConversationNewMessage, KindSuiteTicket,
	KindProgramNotify, KindMsgAuditNotify,
	KindCreateAuth, KindChangeAuth, KindCancelAuth, KindResetPermanentCode,
	KindUnknown,
}

// Callback is one verified and decrypted WeCom callback, as the intake stores
// it (JSON) in the WECOM_CALLBACKS stream on subject
// <prefix>.callback.<app>.<kind>.
//
// The record holds the hit token and the raw plaintext: the stream is the
// durable hand-over to fetch and must be protected like any other secret store.
type Callback struct {
	// ID identifies the delivery: derived from the app and the encrypted
	// payload, so WeCom's retries of one callback share it. The record's
	// Nats-Msg-Id, or with the embedded server its Wecom-Callback-Id
	// header (the receiver then keeps the ids itself).
	ID string `json:"id"`
	// App is the configured app name (the /callback/{app} path segment).
	App string `json:"app"`
	// Kind is the classified kind.
	Kind Kind `json:"kind"`
	// Format is the inner plaintext's format: "xml" or "json".
	Format string `json:"format"`
	// CorpID is the corp the event concerns: AuthCorpId for suite
	// callbacks, ToUserName otherwise. May be empty (suite_ticket).
	CorpID string `json:"corp_id,omitempty"`
	// SuiteID is SuiteId for suite (指令回调) callbacks.
	SuiteID string `json:"suite_id,omitempty"`
	// Token is the short-lived (10 min) token of hit_keyword and
	// conversation_new_message.
	Token string `json:"token,omitempty"`
	// SuiteTicket is the ticket of a suite_ticket callback.
	SuiteTicket string `json:"suite_ticket,omitempty"`
	// AuthCode is the single-use authorization code of create_auth and
	// reset_permanent_code (valid 10 minutes). It is a secret: whoever
	// exchanges it first gets the corp's permanent code.
	AuthCode string `json:"auth_code,omitempty"`
	// NotifyID and NotifyScene come with program_notify.
	NotifyID    string `json:"notify_id,omitempty"`
	NotifyScene int    `json:"notify_scene,omitempty"`
	// EventTime is WeCom's TimeStamp/CreateTime (unix seconds), 0 if absent.
	EventTime int64 `json:"event_time,omitempty"`
	// ReceivedAt is when the receiver accepted the callback.
	ReceivedAt time.Time `json:"received_at"`
	// Raw is the decrypted plaintext exactly as WeCom sent it.
	Raw string `json:"raw"`
}
