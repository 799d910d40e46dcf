package wecom_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// TestContract_RateLimitScope: WeCom counts get_hit_msg_list calls with a
// live hit token apart from token-less ones (and calls with an unknown or
// retired token as token-less), so a 45009 blocks only its own kind of
// call: a dead token's 45009 retires that token, a token-less 45009 blocks
// token-less calls, and calls with fresh valid tokens keep going out.
func TestContract_RateLimitScope(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc, tokenlessLimit(1))
			c := e.client()
			ctx := natstest.Context(t)
			hits := func() int { return e.sim.Requests("get_hit_msg_list") }
			call := func(tok string) error {
				_, err := c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{Token: tok})
				return err
			}
			valid := func() string {
				tok, err := e.sim.IssueHitToken(e.corp)
				require.NoError(t, err)
				return tok
			}

			// The one token-less call of the simulated minute.
			require.NoError(t, call(""))

			// Unknown tokens answered 45009 while fresh valid tokens
			// arrive: every call goes out, every valid one succeeds.
			for i := range 5 {
				before := hits()
				err := call(fmt.Sprintf("dead-token-%d", i))
				assert.True(t, wecom.IsRateLimited(err), "unknown token %d: %v", i, err)
				assert.NoError(t, call(valid()), "valid token after unknown token %d", i)
				assert.Equal(t, 2, hits()-before, "both calls went out (round %d)", i)
			}

			// A retired token is not used again: no request.
			before := hits()
			assert.True(t, wecom.IsRateLimited(call("dead-token-0")))
			assert.Equal(t, before, hits(), "no request with a token that got 45009")

			// The dead tokens' 45009s did not block token-less calls: this
			// one goes out (and gets its own 45009, the minute's budget being
			// spent); the next token-less call does not.
			before = hits()
			assert.True(t, wecom.IsRateLimited(call("")))
			assert.Equal(t, 1, hits()-before, "a token-less call went out")
			assert.True(t, wecom.IsRateLimited(call("")))
			assert.Equal(t, 1, hits()-before, "then token-less calls are blocked")

			// A token-less block does not hold up calls with a valid token.
			before = hits()
			assert.NoError(t, call(valid()))
			assert.Equal(t, 1, hits()-before)
		})
	}
}
