package callback

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/wxml"
)

// Errors from parsing envelopes and events. They wrap the wxml or
// encoding/json cause and never quote the input.
var (
	// ErrMalformed: the envelope or the decrypted event is not well-formed
	// XML or JSON, or lacks a required field.
	ErrMalformed = errors.New("malformed callback")
	// ErrDoctype: the XML carries a DOCTYPE or entity declaration.
	ErrDoctype = errors.New("xml doctype or entity declarations are not allowed")
)

// Format names a callback's encoding.
const (
	FormatXML  = "xml"
	FormatJSON = "json"
)

// Envelope is the outer, still encrypted, body of a POST.
type Envelope struct {
	Format     string
	ToUserName string
	AgentID    string
	Encrypt    string
}

// ParseEnvelope reads the XML (<xml><ToUserName/><AgentID/><Encrypt/></xml>)
// or JSON ({"tousername","encrypt","agentid"}) envelope, chosen by the first
// non-blank byte, since WeCom's Content-Type is not reliable. The result's
// strings share memory with body.
func ParseEnvelope(body string) (Envelope, error) {
	var env Envelope
	switch firstByte(body) {
	case '<':
		env.Format = FormatXML
		seen := 0
		err := wxml.Parse(body, func(name, value string, nested bool) error {
			switch name {
			case "Encrypt":
				if seen&1 != 0 || nested {
					return ErrMalformed
				}
				seen |= 1
				env.Encrypt = value
			case "ToUserName":
				env.ToUserName = value
			case "AgentID":
				env.AgentID = value
			}
			return nil
		})
		if err != nil {
			return Envelope{}, xmlError("envelope", err)
		}
	case '{':
		env.Format = FormatJSON
		var j struct {
			ToUserName string     `json:"tousername"`
			Encrypt    string     `json:"encrypt"`
			AgentID    flexScalar `json:"agentid"`
		}
		if err := json.Unmarshal([]byte(body), &j); err != nil {
			return Envelope{}, fmt.Errorf("%w: envelope: %w", ErrMalformed, jsonError(err))
		}
		env.ToUserName, env.Encrypt, env.AgentID = j.ToUserName, j.Encrypt, string(j.AgentID)
	default:
		return Envelope{}, fmt.Errorf("%w: envelope is neither XML nor JSON", ErrMalformed)
	}
	if env.Encrypt == "" {
		return Envelope{}, fmt.Errorf("%w: envelope has no Encrypt", ErrMalformed)
	}
	return env, nil
}

// Event is a decrypted callback, with the fields the receiver acts on.
// Strings share memory with the plaintext that was parsed.
type Event struct {
	Format      string
	Kind        wecomhit.Kind
	ToUserName  string
	InfoType    string // suite (指令回调) events
	Event       string // app events
	SuiteID     string
	AuthCorpID  string
	Token       string
	SuiteTicket string
	AuthCode    string // create_auth, reset_permanent_code
	NotifyID    string
	NotifyScene int
	Time        int64 // TimeStamp or CreateTime, unix seconds
}

// CorpID is the corp an event concerns: AuthCorpId for suite events (their
// ToUserName is the suite), ToUserName for app events.
func (e *Event) CorpID() string {
	if e.InfoType != "" || e.AuthCorpID != "" {
		return e.AuthCorpID
	}
	return e.ToUserName
}

// ParseEvent reads a decrypted callback, XML or JSON, and classifies it.
// Kinds it does not know are returned as KindUnknown, not as an error: the
// caller keeps their raw plaintext.
func ParseEvent(plaintext string) (Event, error) {
	var (
		ev  Event
		err error
	)
	switch firstByte(plaintext) {
	case '<':
		ev, err = parseXMLEvent(plaintext)
	case '{':
		ev, err = parseJSONEvent(plaintext)
	default:
		return Event{}, fmt.Errorf("%w: event is neither XML nor JSON", ErrMalformed)
	}
	if err != nil {
		return Event{}, err
	}
	ev.Kind = kindOf(ev.InfoType, ev.Event)
	return ev, nil
}

func kindOf(infoType, event string) wecomhit.Kind {
	switch k := wecomhit.Kind(infoType); k {
	case wecomhit.KindHitKeyword, wecomhit.KindConversationNewMessage, wecomhit.KindSuiteTicket,
		wecomhit.KindCreateAuth, wecomhit.KindChangeAuth, wecomhit.KindCancelAuth,
		wecomhit.KindResetPermanentCode:
		return k
	}
	if infoType == "" {
		switch k := wecomhit.Kind(event); k {
		case wecomhit.KindProgramNotify, wecomhit.KindMsgAuditNotify:
			return k
		}
	}
	return wecomhit.KindUnknown
}

// xmlEventFields indexes the fields parseXMLEvent keeps, to reject a
// duplicate: two Tokens in one event mean someone is playing games.
const (
	fToUserName = 1 << iota
	fInfoType
	fEvent
	fSuiteID
	fAuthCorpID
	fToken
	fSuiteTicket
	fNotifyID
	fNotifyScene
	fTimeStamp
	fCreateTime
	fAuthCode
)

func parseXMLEvent(doc string) (Event, error) {
	ev := Event{Format: FormatXML}
	var seen int
	err := wxml.Parse(doc, func(name, value string, nested bool) error {
		var bit int
		switch name {
		case "ToUserName":
			bit, ev.ToUserName = fToUserName, value
		case "InfoType":
			bit, ev.InfoType = fInfoType, value
		case "Event":
			bit, ev.Event = fEvent, value
		// WeCom's docs spell these with "Id"; the "ID" forms are accepted
		// because other WeCom events use them and nothing confirms which
		// spelling every sender uses.
		case "SuiteId", "SuiteID":
			bit, ev.SuiteID = fSuiteID, value
		case "AuthCorpId", "AuthCorpID":
			bit, ev.AuthCorpID = fAuthCorpID, value
		case "Token":
			bit, ev.Token = fToken, value
		case "SuiteTicket":
			bit, ev.SuiteTicket = fSuiteTicket, value
		case "AuthCode":
			bit, ev.AuthCode = fAuthCode, value
		case "NotifyId", "NotifyID":
			bit, ev.NotifyID = fNotifyID, value
		case "NotifyScene":
			n, err := parseInt(value)
			if err != nil {
				return fmt.Errorf("NotifyScene: %w", err)
			}
			bit, ev.NotifyScene = fNotifyScene, int(n)
		case "TimeStamp":
			n, err := parseInt(value)
			if err != nil {
				return fmt.Errorf("TimeStamp: %w", err)
			}
			bit, ev.Time = fTimeStamp, n
		case "CreateTime":
			n, err := parseInt(value)
			if err != nil {
				return fmt.Errorf("CreateTime: %w", err)
			}
			bit = fCreateTime
			if ev.Time == 0 {
				ev.Time = n
			}
		default:
			return nil
		}
		if nested {
			return fmt.Errorf("%s: unexpected child elements", name)
		}
		if seen&bit != 0 {
			return fmt.Errorf("%s: duplicate element", name)
		}
		seen |= bit
		return nil
	})
	if err != nil {
		return Event{}, xmlError("event", err)
	}
	return ev, nil
}

// jsonEvent is the JSON form of a callback. The app callbacks of WeCom's
// official JSON sample use the XML element names as keys; encoding/json
// matches them case-insensitively, which covers spelling variants.
// The zone form ({"event_type", "hit_keyword": {"token"}}) is normally
// delivered to a zone program, not to us; it is accepted anyway because
// nothing confirms it never arrives at an app URL (UNCONFIRMED).
type jsonEvent struct {
	ToUserName  string     `json:"ToUserName"`
	InfoType    string     `json:"InfoType"`
	Event       string     `json:"Event"`
	SuiteID     string     `json:"SuiteId"`
	AuthCorpID  string     `json:"AuthCorpId"`
	Token       string     `json:"Token"`
	SuiteTicket string     `json:"SuiteTicket"`
	AuthCode    string     `json:"AuthCode"`
	NotifyID    string     `json:"NotifyId"`
	NotifyScene flexScalar `json:"NotifyScene"`
	TimeStamp   flexScalar `json:"TimeStamp"`
	CreateTime  flexScalar `json:"CreateTime"`

	EventType string `json:"event_type"`
	// Zone events carry their token in an object named after the event.
	HitKeyword             *struct{ Token string } `json:"hit_keyword"`
	ConversationNewMessage *struct{ Token string } `json:"conversation_new_message"`
}

func parseJSONEvent(doc string) (Event, error) {
	var j jsonEvent
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return Event{}, fmt.Errorf("%w: event: %w", ErrMalformed, jsonError(err))
	}
	ev := Event{
		Format: FormatJSON, ToUserName: j.ToUserName, InfoType: j.InfoType, Event: j.Event,
		SuiteID: j.SuiteID, AuthCorpID: j.AuthCorpID, Token: j.Token, SuiteTicket: j.SuiteTicket,
		AuthCode: j.AuthCode, NotifyID: j.NotifyID,
	}
	for _, f := range []struct {
		name string
		v    flexScalar
		dst  *int64
	}{{"CreateTime", j.CreateTime, &ev.Time}, {"TimeStamp", j.TimeStamp, &ev.Time}} {
		if f.v == "" {
			continue
		}
		n, err := parseInt(string(f.v))
		if err != nil {
			return Event{}, fmt.Errorf("%w: event: %s: %w", ErrMalformed, f.name, err)
		}
		*f.dst = n
	}
	if j.NotifyScene != "" {
		n, err := parseInt(string(j.NotifyScene))
		if err != nil {
			return Event{}, fmt.Errorf("%w: event: NotifyScene: %w", ErrMalformed, err)
		}
		ev.NotifyScene = int(n)
	}
	if ev.InfoType == "" && ev.Event == "" && j.EventType != "" {
		ev.InfoType = j.EventType
		switch {
		case j.HitKeyword != nil && j.EventType == string(wecomhit.KindHitKeyword):
			ev.Token = j.HitKeyword.Token
		case j.ConversationNewMessage != nil && j.EventType == string(wecomhit.KindConversationNewMessage):
			ev.Token = j.ConversationNewMessage.Token
		}
	}
	return ev, nil
}

// flexScalar accepts a JSON string or number and keeps its text: WeCom's
// JSON sends AgentID and CreateTime as numbers, and MsgId exceeds float64.
type flexScalar string

func (f *flexScalar) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexScalar(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("expected a string or a number")
	}
	*f = flexScalar(n)
	return nil
}

func parseInt(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, errors.New("not an integer")
	}
	return n, nil
}

func firstByte(s string) byte {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return s[i]
	}
	return 0
}

// xmlError wraps a wxml error as ErrDoctype or ErrMalformed.
func xmlError(what string, err error) error {
	if errors.Is(err, wxml.ErrDoctype) {
		return fmt.Errorf("%w: %s", ErrDoctype, what)
	}
	return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
}

// jsonError drops encoding/json's quoting of input values, keeping the kind
// of failure and its offset: a token must never reach a log through an error.
func jsonError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at offset %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("field %s has the wrong type", typ.Field)
	}
	return errors.New("invalid JSON")
}
