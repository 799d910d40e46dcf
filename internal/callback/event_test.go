package callback

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
)

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Event
	}{
		{"HitKeywordXML", callbacktest.HitKeywordXML, Event{Format: FormatXML, Kind: wecomhit.KindHitKeyword, InfoType: "hit_keyword",
			SuiteID: "wwArchiveSuite01", AuthCorpID: "wwCorpABC123", Token: callbacktest.HitToken, Time: 1717000000}},
		{"ConversationNewMessageXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><AuthCorpId><![CDATA[c]]></AuthCorpId><InfoType><![CDATA[conversation_new_message]]></InfoType><Token><![CDATA[t]]></Token><TimeStamp>5</TimeStamp></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindConversationNewMessage, InfoType: "conversation_new_message", SuiteID: "s", AuthCorpID: "c", Token: "t", Time: 5}},
		{"SuiteTicketXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindSuiteTicket, InfoType: "suite_ticket", SuiteID: "s", SuiteTicket: "asdfasfdasdfasdf", Time: 1403610513}},
		{"ProgramNotifyXML", `<xml><ToUserName><![CDATA[wwCorpABC123]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1717000001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[program_notify]]></Event><NotifyId><![CDATA[ntf-91c2]]></NotifyId><NotifyScene>1</NotifyScene></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindProgramNotify, ToUserName: "wwCorpABC123", Event: "program_notify", NotifyID: "ntf-91c2", NotifyScene: 1, Time: 1717000001}},
		{"MsgAuditNotifyXML", `<xml><ToUserName><![CDATA[wwCorpABC123]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1717000002</CreateTime><MsgType><![CDATA[event]]></MsgType><AgentID>2000004</AgentID><Event><![CDATA[msgaudit_notify]]></Event></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindMsgAuditNotify, ToUserName: "wwCorpABC123", Event: "msgaudit_notify", Time: 1717000002}},
		{"UnknownInfoTypeXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA[change_contact]]></InfoType><AuthCorpId><![CDATA[c]]></AuthCorpId></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindUnknown, InfoType: "change_contact", SuiteID: "s", AuthCorpID: "c"}},
		// Authorization events (protocol notes §8): create_auth names no
		// corp, only a code; reset_permanent_code names both.
		{"CreateAuthXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><AuthCode><![CDATA[ac-1]]></AuthCode><InfoType><![CDATA[create_auth]]></InfoType><TimeStamp>1717000003</TimeStamp><State><![CDATA[st]]></State><ExtraInfo><![CDATA[]]></ExtraInfo></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindCreateAuth, InfoType: "create_auth", SuiteID: "s", AuthCode: "ac-1", Time: 1717000003}},
		{"ChangeAuthXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA[change_auth]]></InfoType><TimeStamp>1717000004</TimeStamp><AuthCorpId><![CDATA[c]]></AuthCorpId><State><![CDATA[]]></State><ExtraInfo><![CDATA[]]></ExtraInfo></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindChangeAuth, InfoType: "change_auth", SuiteID: "s", AuthCorpID: "c", Time: 1717000004}},
		{"CancelAuthXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA[cancel_auth]]></InfoType><TimeStamp>1717000005</TimeStamp><AuthCorpId><![CDATA[c]]></AuthCorpId></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindCancelAuth, InfoType: "cancel_auth", SuiteID: "s", AuthCorpID: "c", Time: 1717000005}},
		{"ResetPermanentCodeXML", `<xml><SuiteId><![CDATA[s]]></SuiteId><AuthCode><![CDATA[ac-2]]></AuthCode><InfoType><![CDATA[reset_permanent_code]]></InfoType><TimeStamp>1717000006</TimeStamp><AuthCorpId><![CDATA[c]]></AuthCorpId></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindResetPermanentCode, InfoType: "reset_permanent_code", SuiteID: "s", AuthCorpID: "c", AuthCode: "ac-2", Time: 1717000006}},
		{"CreateAuthJSON", `{"SuiteId":"s","AuthCode":"ac-3","InfoType":"create_auth","TimeStamp":1717000007,"State":"","ExtraInfo":""}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindCreateAuth, InfoType: "create_auth", SuiteID: "s", AuthCode: "ac-3", Time: 1717000007}},
		{"ChangeAuthJSON", `{"SuiteId":"s","AuthCorpId":"c","InfoType":"change_auth","TimeStamp":"1717000008"}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindChangeAuth, InfoType: "change_auth", SuiteID: "s", AuthCorpID: "c", Time: 1717000008}},
		{"CancelAuthJSON", `{"SuiteId":"s","AuthCorpId":"c","InfoType":"cancel_auth","TimeStamp":1717000009}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindCancelAuth, InfoType: "cancel_auth", SuiteID: "s", AuthCorpID: "c", Time: 1717000009}},
		{"ResetPermanentCodeJSON", `{"SuiteId":"s","AuthCorpId":"c","AuthCode":"ac-4","InfoType":"reset_permanent_code","TimeStamp":1717000010}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindResetPermanentCode, InfoType: "reset_permanent_code", SuiteID: "s", AuthCorpID: "c", AuthCode: "ac-4", Time: 1717000010}},
		{"AuthInfoTypeAsAppEventIsUnknown", `<xml><ToUserName><![CDATA[c]]></ToUserName><Event><![CDATA[create_auth]]></Event></xml>`,
			Event{Format: FormatXML, Kind: wecomhit.KindUnknown, ToUserName: "c", Event: "create_auth"}},
		{"TextMessageXMLIsUnknown", "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<MsgType><![CDATA[text]]></MsgType><CreateTime>1409659813</CreateTime><ScanCodeInfo><ScanType>qr</ScanType></ScanCodeInfo></xml>",
			Event{Format: FormatXML, Kind: wecomhit.KindUnknown, ToUserName: "wx5823bf96d3bd56c7", Time: 1409659813}},
		{"HitKeywordJSON", `{"SuiteId":"s","AuthCorpId":"c","InfoType":"hit_keyword","Token":"t","TimeStamp":1717000000}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindHitKeyword, InfoType: "hit_keyword", SuiteID: "s", AuthCorpID: "c", Token: "t", Time: 1717000000}},
		{"ProgramNotifyJSONStrings", `{"ToUserName":"c","CreateTime":"1717000001","Event":"program_notify","NotifyId":"n","NotifyScene":"3"}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindProgramNotify, ToUserName: "c", Event: "program_notify", NotifyID: "n", NotifyScene: 3, Time: 1717000001}},
		{"ZoneStyleJSON", `{"event_type":"hit_keyword","timestamp":1717000000,"hit_keyword":{"token":"tz"}}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindHitKeyword, InfoType: "hit_keyword", Token: "tz", Time: 1717000000}},
		{"OfficialJSONSampleIsUnknown", `{"ToUserName":"wx5823bf96d3bd56c7","FromUserName":"mycreate","CreateTime": 1409659813,"MsgType":"text","Content":"hello","MsgId":4561255354251345929,"AgentID": 218}`,
			Event{Format: FormatJSON, Kind: wecomhit.KindUnknown, ToUserName: "wx5823bf96d3bd56c7", Time: 1409659813}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvent(tt.doc)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestEvent_CorpID(t *testing.T) {
	hit, err := ParseEvent(callbacktest.HitKeywordXML)
	require.NoError(t, err)
	assert.Equal(t, "wwCorpABC123", hit.CorpID())
	app := Event{ToUserName: "wwCorp"}
	assert.Equal(t, "wwCorp", app.CorpID())
	ticket := Event{InfoType: "suite_ticket", ToUserName: "wwSuite"}
	assert.Equal(t, "", ticket.CorpID(), "a suite event's ToUserName is the suite, not a corp")
}

func TestParseEvent_Errors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"ErrEmpty", "", ErrMalformed},
		{"ErrDigits", "1616140317555161061", ErrMalformed},
		{"ErrBrokenXML", "<xml><InfoType>hit_keyword</xml>", ErrMalformed},
		{"ErrDoctype", `<!DOCTYPE x [<!ENTITY t "a">]><xml><Token>&t;</Token></xml>`, ErrDoctype},
		{"ErrDuplicateToken", "<xml><InfoType>hit_keyword</InfoType><Token>a</Token><Token>b</Token></xml>", ErrMalformed},
		{"ErrDuplicateAuthCode", "<xml><InfoType>create_auth</InfoType><AuthCode>a</AuthCode><AuthCode>b</AuthCode></xml>", ErrMalformed},
		{"ErrNestedToken", "<xml><Token><a/></Token></xml>", ErrMalformed},
		{"ErrBadTimeStamp", "<xml><TimeStamp>soon</TimeStamp></xml>", ErrMalformed},
		{"ErrBadNotifyScene", "<xml><NotifyScene>x</NotifyScene></xml>", ErrMalformed},
		{"ErrBrokenJSON", `{"InfoType":`, ErrMalformed},
		{"ErrJSONWrongType", `{"InfoType":["hit_keyword"]}`, ErrMalformed},
		{"ErrJSONBadTime", `{"TimeStamp":"soon"}`, ErrMalformed},
		{"ErrJSONObjectTime", `{"TimeStamp":{}}`, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEvent(tt.doc)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	t.Run("XML", func(t *testing.T) {
		env, err := ParseEnvelope("<xml><ToUserName><![CDATA[ww1]]></ToUserName><AgentID><![CDATA[218]]></AgentID><Encrypt><![CDATA[abc=]]></Encrypt></xml>")
		require.NoError(t, err)
		assert.Equal(t, Envelope{Format: FormatXML, ToUserName: "ww1", AgentID: "218", Encrypt: "abc="}, env)
	})
	t.Run("XMLSuiteNoAgentID", func(t *testing.T) {
		env, err := ParseEnvelope("<xml><ToUserName><![CDATA[wwSuite]]></ToUserName><Encrypt><![CDATA[abc=]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>")
		require.NoError(t, err)
		assert.Equal(t, "abc=", env.Encrypt)
	})
	t.Run("JSONNumberAgentID", func(t *testing.T) {
		env, err := ParseEnvelope(`{"tousername":"ww1","encrypt":"abc=","agentid":218}`)
		require.NoError(t, err)
		assert.Equal(t, Envelope{Format: FormatJSON, ToUserName: "ww1", AgentID: "218", Encrypt: "abc="}, env)
	})
	for name, body := range map[string]string{
		"ErrNoEncrypt":        "<xml><ToUserName>a</ToUserName></xml>",
		"ErrEmptyEncrypt":     "<xml><Encrypt></Encrypt></xml>",
		"ErrTwoEncrypt":       "<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
		"ErrJSONNoEncrypt":    `{"tousername":"a"}`,
		"ErrJSONArray":        `["encrypt"]`,
		"ErrJSONEncryptArray": `{"encrypt":["a"]}`,
		"ErrNeither":          "encrypt=abc",
		"ErrTruncated":        "<xml><Encrypt>abc",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseEnvelope(body)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
	t.Run("ErrDoctype", func(t *testing.T) {
		_, err := ParseEnvelope(`<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Encrypt>&x;</Encrypt></xml>`)
		assert.ErrorIs(t, err, ErrDoctype)
	})
}

func TestParseEvent_ErrorsHideValues(t *testing.T) {
	secret := "tkn-SECRET-VALUE"
	for _, doc := range []string{
		`{"Token":["` + secret + `"]}`,
		`{"Token":"` + secret + `",}`,
		`{"TimeStamp":"` + secret + `"}`,
		`<xml><TimeStamp>` + secret + `</TimeStamp></xml>`,
	} {
		_, err := ParseEvent(doc)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), secret)
	}
}
