package wecom

import (
	"context"
	"encoding/json"
	"iter"

	gojson "github.com/goccy/go-json"
)

// GetHitMsgList fetches one page of hits for corp ("" is the app's only
// corp). req.NotifyID is sent beside request_data for zone apps; archive
// apps must leave it empty. Invalid requests fail with a *ValidationError
// and send nothing.
func (c *Client) GetHitMsgList(ctx context.Context, corp string, req HitMsgListRequest) (*HitMsgList, error) {
	if err := validateHits(&req, c.zone); err != nil {
		return nil, err
	}
	var resp hitMsgListAnswer
	if err := c.invoke(ctx, opGetHitMsgList, corp, req.NotifyID, hitTokenOf(req), &req, &resp); err != nil {
		return nil, err
	}
	return &resp.HitMsgList, nil
}

// hitMsgListAnswer is get_hit_msg_list's answer, errcode and page decoded
// together (see enveloped).
type hitMsgListAnswer struct {
	envelope
	HitMsgList
}

// unmarshal decodes a page with github.com/goccy/go-json, about six
// times as fast as encoding/json on a page of 1,000 hits: the decode
// stands between a hit callback and its first event (BENCHMARKS.md, "Hit
// pages decoded with go-json"). Should go-json refuse the page,
// encoding/json decodes it again from scratch, and its result or error
// is the answer, so a bad page fails as it always did.
// FuzzUnmarshalHitPage holds the two to the same result on any input.
func (a *hitMsgListAnswer) unmarshal(data []byte) error {
	if gojson.Unmarshal(data, a) == nil {
		return nil
	}
	*a = hitMsgListAnswer{}
	return json.Unmarshal(data, a)
}

// hitTokenOf is what makes req a call with a hit token, for rate-limit
// scoping: the token, or for zone apps the notify id that stands for one.
func hitTokenOf(req HitMsgListRequest) string {
	if req.Token != "" {
		return req.Token
	}
	if req.NotifyID != "" {
		return "notify:" + req.NotifyID
	}
	return ""
}

// CreateRule creates a keyword rule and returns its rule_id.
func (c *Client) CreateRule(ctx context.Context, corp string, r Rule) (string, error) {
	if err := validateRule(&r, c.zone); err != nil {
		return "", err
	}
	var resp createRuleResponse
	if err := c.invoke(ctx, opCreateRule, corp, "", "", &r, &resp); err != nil {
		return "", err
	}
	return resp.RuleID, nil
}

// GetRule returns a rule's detail.
func (c *Client) GetRule(ctx context.Context, corp, ruleID string) (*RuleDetail, error) {
	if err := validateRuleID(ruleID); err != nil {
		return nil, err
	}
	var resp RuleDetail
	if err := c.invoke(ctx, opGetRuleDetail, corp, "", "", ruleIDRequest{RuleID: ruleID}, &resp); err != nil {
		return nil, err
	}
	if resp.RuleID == "" {
		resp.RuleID = ruleID
	}
	return &resp, nil
}

// UpdateRule changes the fields and lists u sets; see RuleUpdate and List
// for leaving a list alone versus clearing it.
func (c *Client) UpdateRule(ctx context.Context, corp string, u RuleUpdate) error {
	if err := validateUpdate(&u, c.zone); err != nil {
		return err
	}
	return c.invoke(ctx, opUpdateRule, corp, "", "", u, &struct{}{})
}

// DeleteRule deletes a rule.
func (c *Client) DeleteRule(ctx context.Context, corp, ruleID string) error {
	if err := validateRuleID(ruleID); err != nil {
		return err
	}
	return c.invoke(ctx, opDeleteRule, corp, "", "", ruleIDRequest{RuleID: ruleID}, &struct{}{})
}

// ListRules yields every rule of corp, fetching pages of limit (0: WeCom's
// default) while has_more. It stops at the first error, which it yields;
// ErrCursorStuck if WeCom says has_more without a new cursor.
func (c *Client) ListRules(ctx context.Context, corp string, limit int) iter.Seq2[RuleSummary, error] {
	return func(yield func(RuleSummary, error) bool) {
		if err := validateRuleList("", limit); err != nil {
			yield(RuleSummary{}, err)
			return
		}
		req := ruleListRequest{Limit: limit}
		for {
			var resp ruleListResponse
			if err := c.invoke(ctx, opGetRuleList, corp, "", "", req, &resp); err != nil {
				yield(RuleSummary{}, err)
				return
			}
			for _, r := range resp.RuleList {
				if !yield(r, nil) {
					return
				}
			}
			next, err := nextCursor(bool(resp.HasMore), req.Cursor, resp.NextCursor)
			if err != nil || next == "" {
				if err != nil {
					yield(RuleSummary{}, err)
				}
				return
			}
			req.Cursor = next
		}
	}
}

// SearchMsg yields the ids of matching messages, page after page while
// has_more. req is validated once, before the first request; an invalid one
// yields a *ValidationError and sends nothing.
func (c *Client) SearchMsg(ctx context.Context, corp string, req SearchRequest) iter.Seq2[SearchHit, error] {
	return func(yield func(SearchHit, error) bool) {
		if err := validateSearch(&req, c.zone); err != nil {
			yield(SearchHit{}, err)
			return
		}
		for {
			var resp searchResponse
			if err := c.invoke(ctx, opSearchMsg, corp, "", "", req, &resp); err != nil {
				yield(SearchHit{}, err)
				return
			}
			for _, h := range resp.MsgList {
				if !yield(h, nil) {
					return
				}
			}
			next, err := nextCursor(bool(resp.HasMore), req.Cursor, resp.NextCursor)
			if err != nil || next == "" {
				if err != nil {
					yield(SearchHit{}, err)
				}
				return
			}
			req.Cursor = next
		}
	}
}

// nextCursor returns the cursor of the next page, "" when there is none.
// A has_more with an empty, repeated or oversized cursor is an error:
// following it would loop or be rejected.
func nextCursor(hasMore bool, cur, next string) (string, error) {
	if !hasMore {
		return "", nil
	}
	if next == "" || next == cur {
		return "", ErrCursorStuck
	}
	if len(next) > maxCursorBytes {
		return "", &ValidationError{Field: "next_cursor", Rule: "at most 64 bytes", Limit: maxCursorBytes}
	}
	return next, nil
}
