package wecom

import "github.com/wecomhit/wecomhit/internal/secret"

// Modes of an App. They are the words of the configuration's apps[].mode,
// which the caller maps to an App.
const (
	// ModeArchive is 会话存档接口授权: a suite calls the HTTPS paths for the
	// corps that authorized it.
	ModeArchive = "archive"
	// ModeZone is 数据与智能专区: one corp's zone program is called through
	// its abilities.
	ModeZone = "zone"
)

// DefaultAPIBaseURL is WeCom's API root, for an App without APIBaseURL.
const DefaultAPIBaseURL = "https://qyapi.weixin.qq.com"

// App is what a Client needs of one WeCom app: its mode and the
// credentials and addresses of that mode. New checks that the mode's
// fields are set. The Client keeps its own copy; it holds no callback
// crypto (that is the callback endpoint's).
type App struct {
	// Name identifies the app in logs, metrics and the token store.
	Name string
	// Mode is ModeArchive or ModeZone.
	Mode string
	// APIBaseURL is WeCom's API root, without trailing slash. Default
	// DefaultAPIBaseURL.
	APIBaseURL string

	// CorpID, CorpSecret and ProgramID are a zone app's corp, its secret for
	// gettoken and the zone program it calls. An archive app may name one
	// corp in CorpID; the Client does not use it.
	CorpID     string
	CorpSecret secret.Secret
	ProgramID  string
	// Abilities maps an operation (get_hit_msg_list, create_rule, ...) to
	// the zone program's ability id.
	Abilities map[string]string
	// WrapAbilityIO wraps request_data as {"input":…} and unwraps
	// {"output":…} in responses.
	WrapAbilityIO bool

	// SuiteID and SuiteSecret identify an archive app's suite.
	SuiteID     string
	SuiteSecret secret.Secret
	// Corps are the corps that authorized the suite, with their permanent
	// codes; with WithPermanentCodes the registry answers for others.
	Corps []Corp
}

// Corp is a corp that authorized an archive suite.
type Corp struct {
	CorpID        string
	PermanentCode secret.Secret
}
