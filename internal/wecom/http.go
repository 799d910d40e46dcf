package wecom

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// refuseRedirect is the CheckRedirect of every Client: the 3xx answer
// itself comes back, and roundTrip turns it into ErrRedirect.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// plainRemote reports whether base is plain http to a host other than
// loopback (the simulator and local test rigs are loopback).
func plainRemote(base string) bool {
	u, err := url.Parse(base)
	if err != nil || !strings.EqualFold(u.Scheme, "http") {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// envelope is the errcode/errmsg pair every WeCom answer carries. Token
// calls may leave errcode out on success, hence the pointer-free zero.
type envelope struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// checkEnvelope turns a non-zero errcode in body into an *APIError.
func checkEnvelope(api string, body []byte) error {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("wecom %s: decode response: %w", api, err)
	}
	if env.ErrCode != 0 {
		return &APIError{API: api, Code: env.ErrCode, Msg: env.ErrMsg}
	}
	return nil
}

// post sends body to path with tokenParam=token in the query and returns
// the response body once its errcode is 0.
func (c *Client) post(ctx context.Context, api, path, tokenParam, token string, body []byte) ([]byte, error) {
	q := url.Values{tokenParam: {token}}
	return c.roundTrip(ctx, api, http.MethodPost, path, q, body)
}

// roundTrip does one HTTP exchange. Errors never carry the URL's query,
// which holds tokens or the corp secret.
func (c *Client) roundTrip(ctx context.Context, api, method, path string, q url.Values, body []byte) ([]byte, error) {
	u := c.app.APIBaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("wecom %s: %w", api, redactErr(err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.opt.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wecom %s: %w", api, redactErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		// Where it pointed stays out of the error: a Location may echo the
		// query, which holds secrets.
		return nil, fmt.Errorf("%w: %w", &StatusError{API: api, StatusCode: resp.StatusCode}, ErrRedirect)
	}
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return nil, &StatusError{API: api, StatusCode: resp.StatusCode}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.opt.maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("wecom %s: read response: %w", api, redactErr(err))
	}
	if int64(len(data)) > c.opt.maxResponseBytes {
		return nil, fmt.Errorf("wecom %s: %w (limit %d bytes)", api, ErrResponseTooLarge, c.opt.maxResponseBytes)
	}
	if err := checkEnvelope(api, data); err != nil {
		return nil, err
	}
	return data, nil
}
