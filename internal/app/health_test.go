package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// runStatus runs `receiver status` with args and returns its exit code and
// output.
func runStatus(t *testing.T, cfgPath string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr testlog.Buffer
	code := run(context.Background(), append([]string{"status", "-config", cfgPath}, args...),
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

// TestStatus_CorpFailing: WeCom refusing get_hit_msg_list for a corp makes
// status say DEGRADED with the API and errcode, exit 3, and show the
// callback waiting, while /readyz stays 200 (one corp's errors must not pull
// the replica out of the load balancer). Once WeCom answers again, status
// is OK and keeps the last error for people.
func TestStatus_CorpFailing(t *testing.T) {
	s := startSystem(t, "0s")
	cfgPath := opsConfig(t, s, "")
	_, err := s.sim.GenerateMessages(simCorp, 3)
	require.NoError(t, err)
	s.sim.Advance(6 * time.Second)
	natstest.WaitFor(t, 20*time.Second, func() error {
		code, out, errOut := runStatus(t, cfgPath, "-o", "json")
		if code != 0 {
			return fmt.Errorf("healthy before the fault: exit %d: %s%s", code, out, errOut)
		}
		var rep health.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return err
		}
		if rep.Corps[0].LastSuccess == nil {
			return errors.New("no fetch yet")
		}
		return nil
	})

	require.NoError(t, s.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultErrcode, API: "get_hit_msg_list", Errcode: 48002}))
	_, err = s.sim.GenerateMessages(simCorp, 5)
	require.NoError(t, err)
	s.sim.Advance(6 * time.Second) // the hit_keyword callback goes out

	var rep health.Report
	natstest.WaitFor(t, 30*time.Second, func() error {
		code, out, errOut := runStatus(t, cfgPath, "-o", "json", "-max-failures", "2")
		if code != cli.ExitAttention {
			return fmt.Errorf("exit %d: %s%s", code, out, errOut)
		}
		rep = health.Report{}
		return json.Unmarshal([]byte(out), &rep)
	})
	assert.Equal(t, health.StatusDegraded, rep.Verdict.Status)
	require.NotEmpty(t, rep.Verdict.Reasons)
	r := rep.Verdict.Reasons[0]
	assert.Equal(t, health.ReasonCorpFailing, r.Code)
	assert.Equal(t, "archive", r.App)
	assert.Equal(t, simCorp, r.CorpID)
	assert.Equal(t, "get_hit_msg_list", r.API)
	assert.Equal(t, 48002, r.Errcode)
	assert.GreaterOrEqual(t, r.Value, 2.0)
	require.Len(t, rep.Corps, 1)
	c := rep.Corps[0]
	assert.GreaterOrEqual(t, c.ConsecutiveFailures, 2)
	require.NotNil(t, c.LastError)
	assert.Equal(t, "get_hit_msg_list", c.LastError.API)
	assert.Equal(t, 48002, c.LastError.Errcode)
	assert.False(t, c.LastError.Since.After(c.LastError.At))
	require.NotNil(t, c.LastSuccess, "fetches succeeded before the fault")
	assert.True(t, c.LastSuccess.Before(c.LastError.Since))
	assert.Positive(t, rep.Intake.Waiting+rep.Intake.Handling, "the hit callback is retried, not acked")
	require.NotNil(t, rep.Intake.OldestUnhandled)
	require.Len(t, rep.Suites, 1)
	require.NotNil(t, rep.Suites[0].AgeSeconds, "the suite ticket is stored")
	assert.Less(t, *rep.Suites[0].AgeSeconds, 600.0)

	t.Run("ReadyzStaysReady", func(t *testing.T) {
		status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", "")
		assert.Equal(t, http.StatusOK, status, body)
		status, body = adminGet(t, s.m, "/readyz", "")
		assert.Equal(t, http.StatusOK, status, body)
	})

	t.Run("Table", func(t *testing.T) {
		code, out, _ := runStatus(t, cfgPath, "-max-failures", "2")
		assert.Equal(t, cli.ExitAttention, code)
		first, _, _ := strings.Cut(out, "\n")
		assert.Regexp(t, `^DEGRADED: archive/`+simCorp+`: get_hit_msg_list errcode 48002, \d+ failed fetches in a row`, first)
		assert.Regexp(t, `get_hit_msg_list errcode 48002 since \S+ ago`, out)
		for _, secret := range []string{"suite-secret", "perm-code", s.sim.SuiteTicket(), "zone-secret"} {
			assert.NotContains(t, out, secret)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		natstest.WaitFor(t, 20*time.Second, func() error {
			mfs := scrape(t, s.m)
			if v := metricstest.Value(t, mfs, "wecom_receiver_corp_consecutive_failures", "app", "archive", "corp", simCorp); v < 2 {
				return fmt.Errorf("consecutive failures gauge %v", v)
			}
			return nil
		})
	})

	t.Run("Recovers", func(t *testing.T) {
		require.NoError(t, s.sim.SetFaults())
		natstest.WaitFor(t, 30*time.Second, func() error {
			code, out, errOut := runStatus(t, cfgPath, "-o", "json")
			if code != 0 {
				// A fresh callback starts a fetch now, rather than
				// waiting for the retried one's back-off.
				if _, err := s.sim.GenerateMessages(simCorp, 1); err != nil {
					return err
				}
				s.sim.Advance(6 * time.Second)
				return fmt.Errorf("exit %d: %s%s", code, out, errOut)
			}
			rep = health.Report{}
			return json.Unmarshal([]byte(out), &rep)
		})
		assert.Equal(t, health.StatusOK, rep.Verdict.Status)
		c := rep.Corps[0]
		assert.Zero(t, c.ConsecutiveFailures)
		require.NotNil(t, c.LastError, "the last error stays visible")
		assert.Equal(t, 48002, c.LastError.Errcode)
		assert.True(t, c.LastSuccess.After(c.LastError.At))
	})
}

// TestStatus_Unreachable: with NATS down, status cannot tell: exit 4 and a
// verdict of UNKNOWN, as a field in JSON.
func TestStatus_Unreachable(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	require.NoError(t, writeFile(path, `
nats: {url: "nats://127.0.0.1:1", connect_timeout: 1s}
apps:
  - name: archive
    mode: archive
    token: t
    encoding_aes_key: k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz
    api_base_url: http://127.0.0.1:9
    suite_id: s
    suite_secret: x
    corps: [{corp_id: c, permanent_code: p}]
`))
	code, out, errOut := runStatus(t, path, "-o", "json")
	assert.Equal(t, cli.ExitUnknown, code, errOut)
	var rep struct {
		Verdict struct {
			Status  string `json:"status"`
			Reasons []struct {
				Code string `json:"code"`
			} `json:"reasons"`
		} `json:"verdict"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.Equal(t, cli.StatusUnknown, rep.Verdict.Status)
	require.Len(t, rep.Verdict.Reasons, 1)
	assert.Equal(t, "unreachable", rep.Verdict.Reasons[0].Code)

	code, out, _ = runStatus(t, path)
	assert.Equal(t, cli.ExitUnknown, code)
	assert.True(t, strings.HasPrefix(out, "UNKNOWN: "), out)

	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{{"-max-failures", "0"}, {"-max-storage", "1.5"}, {"-max-callback-age", "0s"}, {"-max-rows", "-1"}, {"-o", "yaml"}} {
			code, _, _ := runStatus(t, path, args...)
			assert.Equal(t, 2, code, args)
		}
	})
}

// TestStatus_ManyCorps: with more corps than -max-rows, the table lists
// only the failing ones and counts the rest; -all lists every one, and
// -o json always has every corp. The corps' health is written to NATS as
// the fetchers write it.
func TestStatus_ManyCorps(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: fetch.HealthBucket, History: 1})
	require.NoError(t, err)
	const n = 60
	failing := map[string]bool{"c07": true, "c42": true}
	var corps []string
	now := time.Now().UTC()
	for i := range n {
		corp := fmt.Sprintf("c%02d", i)
		corps = append(corps, fmt.Sprintf("{corp_id: %s, permanent_code: p}", corp))
		h := fetch.Health{LastSuccess: now.Add(-time.Minute)}
		if failing[corp] {
			h.ConsecutiveFailures = 5
			h.LastError = &fetch.HealthError{API: "get_hit_msg_list", Errcode: 48002, Message: "m", Since: now.Add(-30 * time.Second), At: now}
		}
		v, err := json.Marshal(h)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "archive."+corp, v)
		require.NoError(t, err)
	}
	path := t.TempDir() + "/c.yaml"
	require.NoError(t, writeFile(path, fmt.Sprintf(`
nats: {url: %q}
apps:
  - name: archive
    mode: archive
    token: t
    encoding_aes_key: k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz
    api_base_url: http://127.0.0.1:9
    suite_id: s
    suite_secret: x
    corps: [%s]
`, srv.ClientURL(), strings.Join(corps, ", "))))
	rows := func(out string) []string {
		var got []string
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "archive" {
				got = append(got, f[1])
			}
		}
		return got
	}

	code, out, errOut := runStatus(t, path)
	require.Equal(t, cli.ExitAttention, code, errOut)
	assert.Equal(t, []string{"c07", "c42"}, rows(out), out)
	assert.Contains(t, out, "\n58 healthy corps not shown (-all to list them)\n")

	code, out, _ = runStatus(t, path, "-all")
	assert.Equal(t, cli.ExitAttention, code)
	assert.Len(t, rows(out), n)
	assert.NotContains(t, out, "not shown")

	code, out, _ = runStatus(t, path, "-max-rows", "60")
	assert.Equal(t, cli.ExitAttention, code)
	assert.Len(t, rows(out), n, "60 corps fit in -max-rows 60")

	code, out, _ = runStatus(t, path, "-o", "json")
	assert.Equal(t, cli.ExitAttention, code)
	var rep health.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Len(t, rep.Corps, n)
}

// alertRules reads the alerting rules of a Prometheus rules file.
func alertRules(t *testing.T, path string) []struct{ Alert, Expr string } {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &f))
	var rules []struct{ Alert, Expr string }
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "only alerting rules")
			assert.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
			rules = append(rules, struct{ Alert, Expr string }{r.Alert, r.Expr})
		}
	}
	return rules
}

// alertMetrics returns the metric names the alert rules query, other than
// Prometheus' own `up`.
func alertMetrics(t *testing.T, path string) []string {
	t.Helper()
	re := regexp.MustCompile(`\b(wecom_receiver_[a-z_]+|process_[a-z_]+)\b`)
	var names []string
	for _, r := range alertRules(t, path) {
		for _, n := range re.FindAllString(r.Expr, -1) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	require.NotEmpty(t, names)
	return names
}

// TestAlerts: the rules file covers each failure of issue 8 with an alert,
// and promtool (Debian's prometheus package) accepts it when installed and
// passes its rule tests (testdata/alerts_test.yaml: the intake consumer
// alerts against made-up series). That every metric it names exists is
// checked against a live registry in TestMetrics_EndToEnd.
func TestAlerts(t *testing.T) {
	const path = "../../configs/alerts.yaml"
	var names []string
	for _, r := range alertRules(t, path) {
		names = append(names, r.Alert)
	}
	for _, want := range []string{
		"WecomIntakeStalled", "WecomDeadLetters", // poison records, stalled consumer
		"WecomSuiteTicketRejected", "WecomSuiteTicketOld", // pinned ticket, 40085
		"WecomStorageHigh", "WecomCallbacksRefused", // full storage
		"WecomReceiverDown", // a second process: a failed start
		"WecomRateLimited",  // 45009 blocks
		"WecomCorpFailing",  // failure status used to hide
		"WecomIntakeSlow",   // intake pause after a burst

		// No intake consumer: callbacks stored, none handled.
		"WecomIntakeUnbound", "WecomReplicaIntakeUnbound",
	} {
		assert.Contains(t, names, want)
	}

	promtool, err := exec.LookPath("promtool")
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("promtool not on PATH (Debian package prometheus); rules file not checked by promtool")
	}
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	out, err = exec.CommandContext(ctx, promtool, "test", "rules", "testdata/alerts_test.yaml").CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
}

// TestStatus_SuiteTicketRejected: WeCom refusing the stored suite_ticket
// (40085) when the suite token is renewed shows in status: the ticket was
// rejected and dropped, the corp's fetches fail, exit 3; /readyz stays 200.
func TestStatus_SuiteTicketRejected(t *testing.T) {
	s := startSystem(t, "0s")
	cfgPath := opsConfig(t, s, "")
	// Every token the client holds is refused, so it renews them down to
	// the suite token, which WeCom refuses to issue for the stored ticket.
	require.NoError(t, s.sim.SetFaults(
		wecomsim.Fault{Kind: wecomsim.FaultExpireAccessToken, API: "get_hit_msg_list"},
		wecomsim.Fault{Kind: wecomsim.FaultExpireAccessToken, API: "get_corp_token"},
		wecomsim.Fault{Kind: wecomsim.FaultErrcode, API: "get_suite_token", Errcode: 40085},
	))
	_, err := s.sim.GenerateMessages(simCorp, 3)
	require.NoError(t, err)
	s.sim.Advance(6 * time.Second)
	var rep health.Report
	natstest.WaitFor(t, 30*time.Second, func() error {
		code, out, errOut := runStatus(t, cfgPath, "-o", "json", "-max-failures", "1")
		if code != cli.ExitAttention {
			return fmt.Errorf("exit %d: %s%s", code, out, errOut)
		}
		rep = health.Report{}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return err
		}
		if len(rep.Verdict.Reasons) < 2 {
			return fmt.Errorf("reasons %+v", rep.Verdict.Reasons)
		}
		return nil
	})
	var codes []string
	for _, r := range rep.Verdict.Reasons {
		codes = append(codes, r.Code)
	}
	assert.Equal(t, []string{health.ReasonCorpFailing, health.ReasonTicketRejected}, codes)
	require.Len(t, rep.Suites, 1)
	assert.Positive(t, rep.Suites[0].Rejections)
	assert.NotNil(t, rep.Suites[0].LastRejected)
	assert.Nil(t, rep.Suites[0].AgeSeconds, "the rejected ticket was dropped")
	c := rep.Corps[0]
	require.NotNil(t, c.LastError)
	assert.Positive(t, c.ConsecutiveFailures)

	status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", "")
	assert.Equal(t, http.StatusOK, status, body)
	code, out, _ := runStatus(t, cfgPath, "-max-failures", "1")
	assert.Equal(t, cli.ExitAttention, code)
	assert.Regexp(t, `^DEGRADED: archive/`+simCorp+`: .*; suite `+simSuite+` \(app archive\) has no usable suite_ticket: WeCom rejected the last \(40085\)`, out)
	assert.Regexp(t, `suite ticket: `+simSuite+` \(app archive\): none usable; WeCom rejected \d+ \(40085\)`, out)
	assert.NotContains(t, out, s.sim.SuiteTicket())
}
