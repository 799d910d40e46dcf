package wecom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"syscall"
)

// Sentinels for conditions callers branch on. The errcode sentinels are
// *APIError values: errors.Is matches any *APIError with the same Code,
// whatever its API and Msg.
var (
	// ErrRateLimited is errcode 45009, API call frequency exceeded.
	ErrRateLimited = &APIError{Code: 45009}
	// ErrConcurrencyLimited is errcode 45033, concurrent-call limit exceeded.
	ErrConcurrencyLimited = &APIError{Code: 45033}
	// ErrSystemBusy is errcode -1; it is retried.
	ErrSystemBusy = &APIError{Code: -1}
	// ErrSuiteTicketInvalid is errcode 40085, an invalid or expired
	// suite_ticket: the ticket store drops the ticket it handed out.
	ErrSuiteTicketInvalid = &APIError{Code: codeInvalidSuiteTicket}

	// ErrTokenInvalid matches an *APIError whose code says the access token
	// or suite access token is invalid or expired: 40014, 42001, 42009,
	// 40082.
	ErrTokenInvalid = errors.New("wecom: access token invalid or expired")
	// ErrValidation matches every *ValidationError.
	ErrValidation = errors.New("wecom: invalid request")
	// ErrInvalidOption: New got a bad option value or app configuration.
	ErrInvalidOption = errors.New("wecom: invalid option")
	// ErrUnknownCorp: the corp id names no corp of the app.
	ErrUnknownCorp = errors.New("wecom: unknown corp")
	// ErrNoSuiteTicket: an archive app has no suite_ticket stored yet, so it
	// cannot get a suite access token. WeCom pushes one every 10 minutes.
	ErrNoSuiteTicket = errors.New("wecom: no suite_ticket stored")
	// ErrRedirect: WeCom's address answered with a redirect, which the
	// client never follows (the request carries secrets); check
	// api_base_url and what sits in front of it.
	ErrRedirect = errors.New("wecom: redirect refused")
	// ErrResponseTooLarge: a response body exceeded the size limit.
	ErrResponseTooLarge = errors.New("wecom: response too large")
	// ErrCursorStuck: a page said has_more but gave no new cursor, which
	// would make a paging iterator loop forever.
	ErrCursorStuck = errors.New("wecom: has_more without a new next_cursor")
)

// Token-invalid errcodes. 40014/42001 are about the corp access token,
// 42009/40082 about the suite access token (protocol §6, §7). 40082, a
// suite token WeCom does not know, has to drop the cached one like 42009:
// otherwise a suite token invalidated early (or issued by a simulator since
// restarted) would fail every call until its own expiry, up to two hours.
const (
	codeInvalidToken       = 40014
	codeTokenExpired       = 42001
	codeSuiteTokenExpired  = 42009
	codeInvalidSuiteToken  = 40082
	codeInvalidSuiteTicket = 40085
	codeRateLimited        = 45009
	codeSystemBusy         = -1
)

// APIError is a non-zero errcode from WeCom. Msg is WeCom's errmsg, kept for
// people; code decides everything (protocol §7: never branch on errmsg).
type APIError struct {
	// API is the operation or token call, e.g. "get_hit_msg_list", "gettoken".
	API  string
	Code int
	Msg  string
}

func (e *APIError) Error() string {
	if e.API == "" {
		return "wecom: errcode " + strconv.Itoa(e.Code)
	}
	return fmt.Sprintf("wecom %s: errcode %d: %s", e.API, e.Code, e.Msg)
}

// Is matches another *APIError by Code, and ErrTokenInvalid by the
// token-invalid codes.
func (e *APIError) Is(target error) bool {
	if target == ErrTokenInvalid {
		switch e.Code {
		case codeInvalidToken, codeTokenExpired, codeSuiteTokenExpired, codeInvalidSuiteToken:
			return true
		}
		return false
	}
	t, ok := target.(*APIError)
	return ok && t.Code == e.Code
}

// StatusError is an HTTP status other than 200 from WeCom. 5xx is retried.
type StatusError struct {
	API        string
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("wecom %s: http status %d", e.API, e.StatusCode)
}

// ValidationError is a request that breaks a documented limit. It is
// returned before anything is sent and never holds the value itself.
type ValidationError struct {
	// Field is the JSON path of the field, e.g. "keyword.word_list[3]".
	Field string
	// Rule says what the value must be, e.g. "at most 20 characters".
	Rule string
	// Limit is the numeric bound Rule names, or 0 if there is none.
	Limit int
}

func (e *ValidationError) Error() string { return "wecom: invalid " + e.Field + ": " + e.Rule }

// Is reports whether target is ErrValidation.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

// IsRateLimited reports whether err is errcode 45009, including the
// fail-fast error of a call made while a rate-limit block is in force.
func IsRateLimited(err error) bool { return errors.Is(err, ErrRateLimited) }

// IsConcurrencyLimited reports whether err is errcode 45033.
func IsConcurrencyLimited(err error) bool { return errors.Is(err, ErrConcurrencyLimited) }

// IsTokenInvalid reports whether err is errcode 40014, 42001, 42009 or 40082.
func IsTokenInvalid(err error) bool { return errors.Is(err, ErrTokenInvalid) }

// IsRetryable reports whether a call that failed with err may succeed if
// tried again unchanged: errcode -1, HTTP 5xx, a timeout of the attempt or a
// broken connection. Cancellation of the caller's context is not retryable,
// and neither is 45009: retrying it only extends the block.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrSystemBusy) {
		return true
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se.StatusCode >= 500
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) ||
		// A connection closed before or during the response.
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// redactURL drops the query of u: it carries access_token,
// suite_access_token, and for gettoken the corp secret.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable url>"
	}
	if p.RawQuery != "" {
		p.RawQuery = "redacted"
	}
	p.User = nil
	p.Fragment = ""
	return p.String()
}

// redactErr returns err with the URL of any *url.Error in its chain
// redacted. net/http puts the full request URL, query and all, into the
// *url.Error it returns, so this runs on every transport error.
func redactErr(err error) error {
	ue, ok := errors.AsType[*url.Error](err)
	if !ok {
		return err
	}
	return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
}
