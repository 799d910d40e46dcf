package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// newCorp authorized the suite in WeCom before anyone configured it here.
const newCorp = "wwNewCorp789"

// sendHitKeyword posts a hit_keyword callback for corp, signed and
// encrypted with the archive app's keys as WeCom would, and requires
// "success".
func sendHitKeyword(t *testing.T, s *system, corp, token string) {
	t.Helper()
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, simSuite)
	require.NoError(t, err)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	plain := fmt.Sprintf("<xml><SuiteId><![CDATA[%s]]></SuiteId><AuthCorpId><![CDATA[%s]]></AuthCorpId>"+
		"<InfoType><![CDATA[hit_keyword]]></InfoType><Token><![CDATA[%s]]></Token><TimeStamp>%s</TimeStamp></xml>",
		simSuite, corp, token, ts)
	q, enc := callbacktest.Seal(t, c, plain, ts)
	status, body := send(t, http.MethodPost, callbackURL(s.m, "archive", q), callbacktest.XMLEnvelope(enc))
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "success", body)
}

// waitHits waits until every hit the simulator made for corp is published,
// and requires each exactly once.
func waitHits(t *testing.T, s *system, corp string, timeout time.Duration) {
	t.Helper()
	want := s.hitIDs(corp)
	require.NotEmpty(t, want)
	var counts map[string]int
	natstest.WaitFor(t, timeout, func() error {
		counts, _ = hittest.Stored(t, s.m.Broker().JetStream())
		n := 0
		for id := range want {
			if counts[id] > 0 {
				n++
			}
		}
		if n < len(want) {
			return fmt.Errorf("%d of %d hits of %s published", n, len(want), corp)
		}
		return nil
	})
	for id := range want {
		require.Equal(t, 1, counts[id], id)
	}
}

// TestDeadLetters_UnknownCorp is issue 8's first done-when: 300 signed
// callbacks for a corp nobody configured, then a suite ticket and a valid
// hit callback. The ticket is stored and the valid hits are published; the
// 300 are dead letters (unknown_corp) that `dlq list` shows; after the corp
// is added and the receiver restarted, `dlq replay` has them handled, and a
// second replay finds nothing to do.
func TestDeadLetters_UnknownCorp(t *testing.T) {
	s := startSystemWith(t, systemOptions{
		pollInterval: "0s",
		simCorps:     []wecomsim.Corp{{CorpID: newCorp, PermanentCode: "perm-new"}},
		// The replay below comes after a simulated ten minutes (the next
		// suite ticket); the poison callbacks' tokens must still be good.
		hitTokenTTL: time.Hour,
	})
	js := s.m.Broker().JetStream()

	// The new corp has hits whose own callbacks are lost, so only a replay
	// of the dead letters can bring them.
	for _, r := range wecomsim.DemoRules() {
		_, err := s.sim.AddRule(newCorp, r.Name, r.Words, r.Semantics)
		require.NoError(t, err)
	}
	require.NoError(t, s.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultDropCallback, API: wecomsim.CallbackHitKeyword}))
	_, err := s.sim.GenerateMessages(newCorp, 300)
	require.NoError(t, err)
	require.NoError(t, s.sim.SetFaults())
	token, err := s.sim.IssueHitToken(newCorp)
	require.NoError(t, err)
	const poison = 300
	for range poison {
		sendHitKeyword(t, s, newCorp, token)
	}

	// Then the next suite ticket, and hits of the configured corp.
	oldTicket := s.sim.SuiteTicket()
	s.sim.Advance(10 * time.Minute)
	newTicket := s.sim.SuiteTicket()
	require.NotEqual(t, oldTicket, newTicket)
	_, err = s.sim.GenerateMessages(simCorp, 300)
	require.NoError(t, err)
	s.sim.Advance(6 * time.Second)
	natstest.WaitFor(t, 10*time.Second, func() error {
		got, err := s.m.Stores().Tickets.Get(context.Background(), simSuite)
		if err != nil {
			return err
		}
		if got != newTicket {
			return fmt.Errorf("the new suite ticket is not stored yet")
		}
		return nil
	})
	waitHits(t, s, simCorp, 20*time.Second)

	dls, err := deadletter.New(js, "wecom")
	require.NoError(t, err)
	var entries []deadletter.Entry
	natstest.WaitFor(t, 20*time.Second, func() error {
		entries, err = dls.List(context.Background(), deadletter.Filter{Reason: wecomhit.ReasonUnknownCorp})
		if err != nil {
			return err
		}
		if len(entries) < poison {
			return fmt.Errorf("%d of %d dead letters", len(entries), poison)
		}
		return nil
	})
	require.Len(t, entries, poison)
	for _, e := range entries {
		require.Equal(t, newCorp, e.CorpID)
		require.Equal(t, wecomhit.DeadLetterCallback, e.Kind)
		require.Equal(t, wecomhit.KindHitKeyword, e.CallbackKind)
		require.Equal(t, "archive", e.App)
		require.Equal(t, 1, e.Deliveries, "dead at once, not retried")
		require.Equal(t, "wecom.dlq.callback.archive.hit_keyword", e.Subject)
	}
	counts, _ := hittest.Stored(t, js)
	for id := range s.hitIDs(newCorp) {
		require.Zero(t, counts[id], "nothing of the unknown corp is published")
	}
	validateDeadLetters(t, js)

	// dlq list, as an operator runs it.
	cfgPath := opsConfig(t, s, "")
	var stdout, stderr testlog.Buffer
	code := run(context.Background(), []string{"dlq", "list", "-config", cfgPath, "-reason", "unknown_corp", "-o", "json"},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, poison)
	var first app.DLQEntry
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	assert.Equal(t, entries[0].Seq, first.Seq)
	assert.Equal(t, wecomhit.ReasonUnknownCorp, first.Reason)
	assert.NotContains(t, stdout.String(), token, "records, with their tokens, are not printed")
	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"dlq", "list", "-config", cfgPath, "-corp", newCorp},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	table := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, table, poison+1)
	assert.Regexp(t, `^SEQ +DEAD_AT +KIND +APP +CORP +CALLBACK +REASON +TRIES +ERROR$`, table[0])
	assert.Contains(t, table[1], "callback  archive  "+newCorp+"  hit_keyword  unknown_corp  1 ")

	// status says so, and that a person is needed.
	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"status", "-config", cfgPath},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	assert.Equal(t, cli.ExitAttention, code, stdout.String())
	assert.Contains(t, stdout.String(), fmt.Sprintf("dead letters: %d callbacks, 0 hits", poison))

	// Someone adds the corp; the receiver restarts with it.
	s.restart(t, func(c *config.Config) {
		c.Apps[0].Corps = append(slices.Clone(c.Apps[0].Corps), config.Corp{CorpID: newCorp, PermanentCode: "perm-new"})
	})
	js = s.m.Broker().JetStream()
	dls, err = deadletter.New(js, "wecom") // on the new connection
	require.NoError(t, err)
	cfgPath = opsConfig(t, s, "")
	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"dlq", "replay", "-config", cfgPath, "-all", "-reason", "unknown_corp", "-o", "json"},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	lines = strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, poison)
	for _, l := range lines {
		var res app.ReplayResult
		require.NoError(t, json.Unmarshal([]byte(l), &res))
		require.Equal(t, app.ReplayReplayed, res.Result, l)
	}
	waitHits(t, s, newCorp, 30*time.Second)
	// Each dead letter goes once its replayed callback is handled; none
	// came back.
	natstest.WaitFor(t, 10*time.Second, func() error {
		left, err := dls.List(context.Background(), deadletter.Filter{})
		if err == nil && len(left) > 0 {
			err = fmt.Errorf("%d dead letters left, the first seq %d", len(left), left[0].Seq)
		}
		return err
	})

	// A second replay does nothing.
	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"dlq", "replay", "-config", cfgPath, "-seq", strconv.FormatUint(entries[0].Seq, 10)},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	assert.Contains(t, stdout.String(), strconv.FormatUint(entries[0].Seq, 10)+"    not_found")
}

// validateDeadLetters checks every dead letter in the stream against
// docs/dead-letter.schema.json.
func validateDeadLetters(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	f, err := os.Open("../../docs/dead-letter.schema.json")
	require.NoError(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("dead-letter.schema.json", doc))
	sch, err := c.Compile("dead-letter.schema.json")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, deadletter.StreamName)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Positive(t, info.State.Msgs)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Data))
		require.NoError(t, err)
		require.NoError(t, sch.Validate(v), "%s", m.Data)
	}
}

// TestAdminAPI_DeadLetters lists and replays dead letters over the admin
// API. A replayed callback whose corp is still unknown becomes a new dead
// letter: the replay is not swallowed by de-duplication, and nothing is lost.
func TestAdminAPI_DeadLetters(t *testing.T) {
	s := startSystem(t, "0s")
	for range 3 {
		sendHitKeyword(t, s, newCorp, "TOKEN-unknown-corp-0123")
	}
	type listed struct {
		DeadLetters []app.DLQEntry `json:"dead_letters"`
		Count       int            `json:"count"`
	}
	list := func(query string) listed {
		t.Helper()
		status, body := apiDo(t, s.m, "GET", "/api/dlq"+query, testAdminToken, "")
		require.Equal(t, http.StatusOK, status, string(body))
		require.NotContains(t, string(body), "TOKEN-unknown-corp", "records are not answered")
		var out listed
		require.NoError(t, json.Unmarshal(body, &out))
		return out
	}
	var before listed
	natstest.WaitFor(t, 10*time.Second, func() error {
		if before = list("?reason=unknown_corp&kind=callback&app=archive&corp=" + newCorp); before.Count < 3 {
			return fmt.Errorf("%d dead letters", before.Count)
		}
		return nil
	})
	require.Len(t, before.DeadLetters, 3)
	assert.Equal(t, 1, list("?limit=1").Count)
	assert.Zero(t, list("?kind=hit").Count)

	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/api/dlq", "", "", http.StatusUnauthorized},
		{"POST", "/api/dlq/replay", "", `{"all":true}`, http.StatusUnauthorized},
		{"GET", "/api/dlq?kind=event", testAdminToken, "", http.StatusBadRequest},
		{"GET", "/api/dlq?limit=0", testAdminToken, "", http.StatusBadRequest},
		{"POST", "/api/dlq/replay", testAdminToken, `{}`, http.StatusBadRequest},
		{"POST", "/api/dlq/replay", testAdminToken, `{"all":true,"seqs":[1]}`, http.StatusBadRequest},
		{"POST", "/api/dlq/replay", testAdminToken, `{"seqs":[1],"reason":"unknown_corp"}`, http.StatusBadRequest},
		{"POST", "/api/dlq/replay", testAdminToken, `{"seqs":[0]}`, http.StatusBadRequest},
		{"POST", "/api/dlq/replay", testAdminToken, `{"every":true}`, http.StatusBadRequest},
	} {
		status, body := apiDo(t, s.m, c.method, c.path, c.token, c.body)
		assert.Equal(t, c.want, status, "%s %s %s: %s", c.method, c.path, c.body, body)
	}
	assert.Equal(t, 3, list("").Count, "the refused requests changed nothing")

	type replayed struct {
		Results []app.ReplayResult `json:"results"`
		Count   int                `json:"count"`
	}
	replay := func(body string) replayed {
		t.Helper()
		status, out := apiDo(t, s.m, "POST", "/api/dlq/replay", testAdminToken, body)
		require.Equal(t, http.StatusOK, status, string(out))
		var r replayed
		require.NoError(t, json.Unmarshal(out, &r))
		return r
	}
	seq := before.DeadLetters[0].Seq
	r := replay(fmt.Sprintf(`{"seqs":[%d]}`, seq))
	require.Equal(t, []app.ReplayResult{{Seq: seq, Result: app.ReplayReplayed}}, r.Results)
	// Handled again, and dead again: the corp is still unknown.
	natstest.WaitFor(t, 10*time.Second, func() error {
		now := list("")
		if now.Count != 3 || slices.ContainsFunc(now.DeadLetters, func(e app.DLQEntry) bool { return e.Seq == seq }) {
			return fmt.Errorf("%d dead letters: %+v", now.Count, now.DeadLetters)
		}
		return nil
	})
	r = replay(fmt.Sprintf(`{"seqs":[%d]}`, seq))
	assert.Equal(t, []app.ReplayResult{{Seq: seq, Result: app.ReplayNotFound}}, r.Results, "a second replay does nothing")

	r = replay(`{"all":true,"reason":"unknown_corp","corp":"` + newCorp + `"}`)
	assert.Equal(t, 3, r.Count)
	for _, res := range r.Results {
		assert.Equal(t, app.ReplayReplayed, res.Result)
	}
}
