package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/wecomhit/wecomhit/internal/secret"
)

// Suite calls about corp authorization (protocol notes, authorization
// events): exchanging the auth code of create_auth or reset_permanent_code
// for a corp's permanent code, and reading a corp's grant after
// change_auth. They use the suite access token, so only archive apps (whose
// suite the config names) make them.

// API names of the authorization calls, as in metrics and errors.
const (
	apiGetPermanentCode   = "get_permanent_code"
	apiGetPermanentCodeV2 = "get_permanent_code_v2"
	apiGetAuthInfo        = "get_auth_info"
)

// Limits of the authorization calls (protocol notes: auth code and
// permanent code are at most 512 bytes). Corp ids are short in practice;
// 128 bytes bounds what a request may carry.
const (
	maxAuthCodeBytes      = 512
	maxPermanentCodeBytes = 512
	maxCorpIDBytes        = 128
)

// codeAPIForbidden is errcode 48002, "API not permitted for this app".
const codeAPIForbidden = 48002

// PermanentCodes looks up an archive corp's permanent code when a corp
// token is due, so corps authorized at run time (the corp registry) need no
// configuration. corps.Mirror implements it.
type PermanentCodes interface {
	// PermanentCode returns the code of corpID in app; an error for a corp
	// that is unknown or no longer authorized.
	PermanentCode(ctx context.Context, app, corpID string) (secret.Secret, error)
}

// PermanentCodesFunc adapts a function to PermanentCodes.
type PermanentCodesFunc func(ctx context.Context, app, corpID string) (secret.Secret, error)

// PermanentCode calls f.
func (f PermanentCodesFunc) PermanentCode(ctx context.Context, app, corpID string) (secret.Secret, error) {
	return f(ctx, app, corpID)
}

// WithPermanentCodes makes the client take archive corps' permanent codes
// from p instead of the app's configured corps: any corp id is accepted,
// and one p does not know fails when its token is fetched (wrapping
// ErrUnknownCorp and p's error). An archive app may then have no corps in
// the configuration. Default none.
func WithPermanentCodes(p PermanentCodes) Option {
	return func(o *options) error {
		if p == nil {
			return invalid("nil permanent code source")
		}
		o.codes = p
		return nil
	}
}

// permanentCode is corp's permanent code, from WithPermanentCodes or the
// configuration.
func (c *Client) permanentCode(ctx context.Context, corp string) (string, error) {
	if c.opt.codes != nil {
		code, err := c.opt.codes.PermanentCode(ctx, c.app.Name, corp)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %w", ErrUnknownCorp, corp, err)
		}
		return code.Reveal(), nil
	}
	if cp, ok := c.configuredCorp(corp); ok {
		return cp.PermanentCode.Reveal(), nil
	}
	return "", nil
}

// ErrNoSuite: the app is not an archive app with a suite, so it cannot make
// suite calls.
var ErrNoSuite = errors.New("wecom: app has no suite")

// PermanentCode is the answer of an auth code exchange.
type PermanentCode struct {
	CorpID   string
	CorpName string
	// PermanentCode is the corp's long-lived credential for
	// get_corp_token. It never prints.
	PermanentCode secret.Secret
	// State is the state parameter of the install link the corp used,
	// empty if none.
	State string
	// API is the call that answered: "get_permanent_code_v2", or
	// "get_permanent_code" after a fallback.
	API string
}

// AuthInfo is a corp's current grant (get_auth_info).
type AuthInfo struct {
	CorpID       string
	CorpName     string
	CorpFullName string
	// Agents are the suite's apps the corp granted, by agent id and name.
	Agents []AuthAgent
}

// AuthAgent is one app of the suite in a corp's grant.
type AuthAgent struct {
	AgentID int    `json:"agentid"`
	Name    string `json:"name"`
}

// permanentCodeResponse covers both exchange calls; v1 adds an access
// token and the grant, which the client does not keep (get_corp_token
// issues tokens through the usual cache).
type permanentCodeResponse struct {
	PermanentCode string `json:"permanent_code"`
	AuthCorpInfo  struct {
		CorpID   string `json:"corpid"`
		CorpName string `json:"corp_name"`
	} `json:"auth_corp_info"`
	State string `json:"state"`
}

// GetPermanentCode exchanges a create_auth or reset_permanent_code auth
// code for the corp's permanent code. It calls the v2 endpoint
// (/cgi-bin/service/v2/get_permanent_code), which WeCom documents as the
// one to prefer, and falls back to v1 (/cgi-bin/service/get_permanent_code)
// only when the v2 answer proves the code was not spent there: HTTP 404,
// 405 or 501 (no such endpoint, e.g. an older private deployment or a proxy
// that does not route it), or errcode 48002 (the API is not permitted for
// this suite). Any other failure is returned as is: an auth code is
// single-use, and a v1 call after a v2 call that may have spent it would
// only turn the real error into "invalid code". Retryable errors are
// retried on the same endpoint, like every call.
//
// The code is validated first (1 to 512 bytes; ValidationError); the
// answer must name a corp and a permanent code.
func (c *Client) GetPermanentCode(ctx context.Context, authCode string) (PermanentCode, error) {
	if c.zone {
		return PermanentCode{}, fmt.Errorf("%w: %q is a zone app", ErrNoSuite, c.app.Name)
	}
	var v check
	if authCode == "" || len(authCode) > maxAuthCodeBytes {
		v.fail("auth_code", fmt.Sprintf("1 to %d bytes", maxAuthCodeBytes), maxAuthCodeBytes)
	}
	if err := v.result(); err != nil {
		return PermanentCode{}, err
	}
	req, err := json.Marshal(map[string]string{"auth_code": authCode})
	if err != nil {
		return PermanentCode{}, err
	}
	pc, err := c.exchangeCode(ctx, apiGetPermanentCodeV2, "/cgi-bin/service/v2/get_permanent_code", req)
	if err == nil || !fallbackToV1(err) {
		return pc, err
	}
	c.log.Info().Err(err).Msg("get_permanent_code v2 unavailable; using v1")
	return c.exchangeCode(ctx, apiGetPermanentCode, "/cgi-bin/service/get_permanent_code", req)
}

// fallbackToV1 reports whether a v2 exchange failure shows that the
// endpoint itself is unavailable, so the code was not spent.
func fallbackToV1(err error) bool {
	if se, ok := errors.AsType[*StatusError](err); ok {
		switch se.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return true
		}
	}
	return errors.Is(err, &APIError{Code: codeAPIForbidden})
}

func (c *Client) exchangeCode(ctx context.Context, api, path string, req []byte) (PermanentCode, error) {
	body, err := c.suiteCall(ctx, api, path, req)
	if err != nil {
		return PermanentCode{}, err
	}
	var r permanentCodeResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return PermanentCode{}, fmt.Errorf("wecom %s: decode response: %w", api, err)
	}
	if r.PermanentCode == "" || r.AuthCorpInfo.CorpID == "" {
		return PermanentCode{}, fmt.Errorf("wecom %s: response lacks permanent_code or auth_corp_info.corpid", api)
	}
	return PermanentCode{
		CorpID: r.AuthCorpInfo.CorpID, CorpName: r.AuthCorpInfo.CorpName,
		PermanentCode: secret.Secret(r.PermanentCode), State: r.State, API: api,
	}, nil
}

// GetAuthInfo reads the corp's current grant with its permanent code, for
// refreshing a registry entry after change_auth. The corp does not have to
// be one of the app's configured corps.
func (c *Client) GetAuthInfo(ctx context.Context, corpID string, permanentCode secret.Secret) (AuthInfo, error) {
	const api = apiGetAuthInfo
	if c.zone {
		return AuthInfo{}, fmt.Errorf("%w: %q is a zone app", ErrNoSuite, c.app.Name)
	}
	var v check
	if corpID == "" || len(corpID) > maxCorpIDBytes {
		v.fail("auth_corpid", fmt.Sprintf("1 to %d bytes", maxCorpIDBytes), maxCorpIDBytes)
	}
	if code := permanentCode.Reveal(); code == "" || len(code) > maxPermanentCodeBytes {
		v.fail("permanent_code", fmt.Sprintf("1 to %d bytes", maxPermanentCodeBytes), maxPermanentCodeBytes)
	}
	if err := v.result(); err != nil {
		return AuthInfo{}, err
	}
	req, err := json.Marshal(map[string]string{"auth_corpid": corpID, "permanent_code": permanentCode.Reveal()})
	if err != nil {
		return AuthInfo{}, err
	}
	body, err := c.suiteCall(ctx, api, "/cgi-bin/service/get_auth_info", req)
	if err != nil {
		return AuthInfo{}, err
	}
	var r struct {
		AuthCorpInfo struct {
			CorpID       string `json:"corpid"`
			CorpName     string `json:"corp_name"`
			CorpFullName string `json:"corp_full_name"`
		} `json:"auth_corp_info"`
		AuthInfo struct {
			Agent []AuthAgent `json:"agent"`
		} `json:"auth_info"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return AuthInfo{}, fmt.Errorf("wecom %s: decode response: %w", api, err)
	}
	if r.AuthCorpInfo.CorpID == "" {
		// Some answers may leave the corp out; it is the one asked about.
		r.AuthCorpInfo.CorpID = corpID
	}
	if r.AuthCorpInfo.CorpID != corpID {
		return AuthInfo{}, fmt.Errorf("wecom %s: answered for corp %q, asked about %q", api, r.AuthCorpInfo.CorpID, corpID)
	}
	return AuthInfo{
		CorpID: r.AuthCorpInfo.CorpID, CorpName: r.AuthCorpInfo.CorpName,
		CorpFullName: r.AuthCorpInfo.CorpFullName, Agents: r.AuthInfo.Agent,
	}, nil
}

// suiteCall posts req to path with the suite access token, retried like
// every call; on a token-invalid answer it drops the suite token, gets a
// fresh one and calls once more (as getCorpToken does).
func (c *Client) suiteCall(ctx context.Context, api, path string, req []byte) ([]byte, error) {
	call := func(suiteToken string) ([]byte, error) {
		var body []byte
		err := c.retry(ctx, c.app.SuiteID, api, "", func(ctx context.Context) error {
			var err error
			body, err = c.post(ctx, api, path, "suite_access_token", suiteToken, req)
			return err
		})
		return body, err
	}
	suiteKey := c.suiteTokenKey()
	getSuiteToken := c.countRefresh(TokenSuite, c.getSuiteToken)
	st, err := c.tokens.get(ctx, suiteKey, getSuiteToken)
	if err != nil {
		return nil, err
	}
	body, err := call(st)
	if !IsTokenInvalid(err) {
		return body, err
	}
	if ierr := c.tokens.invalidate(ctx, suiteKey, st); ierr != nil {
		return nil, errors.Join(err, ierr)
	}
	if st, err = c.tokens.get(ctx, suiteKey, getSuiteToken); err != nil {
		return nil, err
	}
	return call(st)
}
