package wecom

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/wecomhit/wecomhit/internal/netutil"
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
	return !netutil.IsLoopback(u.Hostname())
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
	return env.err(api)
}

// err is the *APIError of a non-zero errcode, else nil.
func (e envelope) err(api string) error {
	if e.ErrCode != 0 {
		return &APIError{API: api, Code: e.ErrCode, Msg: e.ErrMsg}
	}
	return nil
}

// enveloped is a response type that embeds envelope, so one decode reads
// both the errcode and the payload. A page of hits is large, and reading
// it once only for errcode was a measured share of the fetch's CPU.
type enveloped interface{ err(api string) error }

// decodeAnswer decodes an answer whose errcode has not been checked into
// resp, returning the errcode's *APIError first. An enveloped resp is
// decoded once; others are checked, then decoded.
func decodeAnswer(api string, data []byte, resp any) error {
	e, ok := resp.(enveloped)
	if !ok {
		if err := checkEnvelope(api, data); err != nil {
			return err
		}
		if err := json.Unmarshal(data, resp); err != nil {
			return fmt.Errorf("wecom %s: decode response: %w", api, err)
		}
		return nil
	}
	var err error
	if d, ok := resp.(selfDecoding); ok {
		err = d.unmarshal(data)
	} else {
		err = json.Unmarshal(data, resp)
	}
	if err != nil {
		// An error answer whose other fields do not fit resp still
		// reports its errcode, as the separate check did.
		if eerr := checkEnvelope(api, data); eerr != nil {
			return eerr
		}
		return fmt.Errorf("wecom %s: decode response: %w", api, err)
	}
	return e.err(api)
}

// selfDecoding is an enveloped answer that decodes itself rather than
// through encoding/json (hitMsgListAnswer).
type selfDecoding interface{ unmarshal(data []byte) error }

// post sends body to path with tokenParam=token in the query and returns
// the response body once its errcode is 0.
func (c *Client) post(ctx context.Context, api, path, tokenParam, token string, body []byte) ([]byte, error) {
	q := url.Values{tokenParam: {token}}
	return c.roundTrip(ctx, api, http.MethodPost, path, q, body)
}

// postUnchecked is post without the errcode check: the caller decodes the
// answer with decodeAnswer, which checks it. The answer is read into buf
// and is valid until buf is used again.
func (c *Client) postUnchecked(ctx context.Context, api, path, tokenParam, token string, body []byte, buf *bytes.Buffer) ([]byte, error) {
	q := url.Values{tokenParam: {token}}
	return c.exchangeInto(ctx, api, http.MethodPost, path, q, body, buf)
}

// Answers are read into buffers the client reuses (answerBuf), up to this
// size: a page of hits is hundreds of KiB, and reading each into a new,
// growing slice was the fetch's largest allocation.
const maxReusedAnswer = 4 << 20

// answerBuf returns a buffer for an answer; putAnswerBuf gives it back
// once the answer is decoded.
func (c *Client) answerBuf() *bytes.Buffer {
	if b, ok := c.answers.Get().(*bytes.Buffer); ok {
		return b
	}
	return new(bytes.Buffer)
}

func (c *Client) putAnswerBuf(b *bytes.Buffer) {
	if b.Cap() <= maxReusedAnswer {
		b.Reset()
		c.answers.Put(b)
	}
}

// roundTrip does one HTTP exchange and returns the response body once its
// errcode is 0.
func (c *Client) roundTrip(ctx context.Context, api, method, path string, q url.Values, body []byte) ([]byte, error) {
	data, err := c.exchange(ctx, api, method, path, q, body)
	if err != nil {
		return nil, err
	}
	if err := checkEnvelope(api, data); err != nil {
		return nil, err
	}
	return data, nil
}

// exchange does one HTTP exchange and returns the 200 answer's body,
// errcode unchecked. Errors never carry the URL's query, which holds
// tokens or the corp secret.
func (c *Client) exchange(ctx context.Context, api, method, path string, q url.Values, body []byte) ([]byte, error) {
	return c.exchangeInto(ctx, api, method, path, q, body, nil)
}

// exchangeInto is exchange reading the answer into buf, unless nil.
func (c *Client) exchangeInto(ctx context.Context, api, method, path string, q url.Values, body []byte, buf *bytes.Buffer) ([]byte, error) {
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
	var data []byte
	if buf == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, c.opt.maxResponseBytes+1))
	} else {
		buf.Reset()
		if n := resp.ContentLength; n > 0 && n <= c.opt.maxResponseBytes {
			buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants room to see the end
		}
		_, err = buf.ReadFrom(io.LimitReader(resp.Body, c.opt.maxResponseBytes+1))
		data = buf.Bytes()
	}
	if err != nil {
		return nil, fmt.Errorf("wecom %s: read response: %w", api, redactErr(err))
	}
	if int64(len(data)) > c.opt.maxResponseBytes {
		return nil, fmt.Errorf("wecom %s: %w (limit %d bytes)", api, ErrResponseTooLarge, c.opt.maxResponseBytes)
	}
	return data, nil
}
