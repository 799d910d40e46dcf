package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// roleConn logs in to the test system's listener with a seed file and
// collects the server's asynchronous errors (permission violations).
type roleConn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func dialRole(t *testing.T, s *system, seedFile string, opts ...nats.Option) *roleConn {
	t.Helper()
	c := &roleConn{errs: make(chan error, 64)}
	seed, err := nats.NkeyOptionFromSeed(seedFile)
	require.NoError(t, err)
	c.nc, err = nats.Connect(s.m.Broker().ClientURL(), append(opts, seed, nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))...)
	require.NoError(t, err)
	t.Cleanup(c.nc.Close)
	c.js, err = jetstream.New(c.nc)
	require.NoError(t, err)
	return c
}

// dialConsumer logs in as the consumer role, whose JetStream API is under
// app.ConsumerAPIPrefix.
func dialConsumer(t *testing.T, s *system, seedFile string) *roleConn {
	t.Helper()
	c := dialRole(t, s, seedFile)
	var err error
	c.js, err = jetstream.NewWithAPIPrefix(c.nc, app.ConsumerAPIPrefix)
	require.NoError(t, err)
	return c
}

// denied runs op and requires the server to refuse it with a permission
// violation naming want. A refused request gets no answer, so op is
// cancelled once the violation arrives; an op that returns first (with or
// without an error) was not refused.
func (c *roleConn) denied(t *testing.T, want string, op func(ctx context.Context) error) {
	t.Helper()
	for len(c.errs) > 0 {
		<-c.errs // from an earlier op
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	select {
	case err := <-c.errs:
		cancel()
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
		assert.Contains(t, err.Error(), want)
		assert.Error(t, <-done, "a refused operation does not succeed")
	case err := <-done:
		t.Fatalf("%s: done without a permission violation (err %v)", want, err)
	}
}

// hitsIn counts the messages WECOM_HITS holds, through the receiver.
func hitsIn(t *testing.T, s *system) uint64 {
	t.Helper()
	st, err := s.m.Broker().JetStream().Stream(t.Context(), publish.StreamName)
	require.NoError(t, err)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

// TestNATSRoles: the embedded server's listener, as issue 9 asks. No login,
// no connection; the consumer role, with the seed `receiver creds consumer`
// hands out, reads hits through a durable consumer and nothing else; the
// operator role cannot destroy data. (The operator commands themselves run
// with the operator seed in TestRun_Tail, TestRun_Status and
// TestBackfill_*, which find it through the config as on the receiver's host.)
func TestNATSRoles(t *testing.T) {
	s := startSystem(t, "0s")
	_, err := s.sim.GenerateMessages(simCorp, 100)
	require.NoError(t, err)
	want := s.hitIDs(simCorp)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if n := hitsIn(t, s); n < uint64(len(want)) {
			return fmt.Errorf("%d of %d", n, len(want))
		}
		return nil
	})
	stored := hitsIn(t, s)
	url := s.m.Broker().ClientURL()

	t.Run("ErrNoCredentials", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.NoReconnect())
		if nc != nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})

	// The consumer team's file, as the operator hands it over.
	var stdout, stderr testlog.Buffer
	code := run(t.Context(), []string{"creds", "consumer", "-config", opsConfig(t, s, "")},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	seed, err := os.ReadFile(broker.SeedFile(s.m.Cfg().NATS.RolesDir(), app.RoleConsumer))
	require.NoError(t, err)
	require.Equal(t, string(seed), stdout.String())
	assert.NotContains(t, stderr.String(), "SU", "the seed goes to stdout only")
	assert.Contains(t, stderr.String(), app.ConsumerAPIPrefix, "the team is told the API prefix")
	consumerFile := filepath.Join(t.TempDir(), "consumer.nk")
	require.NoError(t, os.WriteFile(consumerFile, []byte(stdout.String()), 0o600))

	t.Run("Consumer", func(t *testing.T) {
		c := dialConsumer(t, s, consumerFile)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()

		// A durable consumer: create, read, ack (double ack: the server
		// confirms), and find it acked.
		st, err := c.js.Stream(ctx, publish.StreamName)
		require.NoError(t, err)
		cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: "team-a", FilterSubject: "wecom.hit.>", AckPolicy: jetstream.AckExplicitPolicy,
		})
		require.NoError(t, err)
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		n := 0
		for msg := range batch.Messages() {
			var ev wecomhit.HitEvent
			require.NoError(t, json.Unmarshal(msg.Data(), &ev))
			assert.Equal(t, simCorp, ev.CorpID)
			require.NoError(t, msg.DoubleAck(ctx))
			n++
		}
		require.NoError(t, batch.Error())
		require.Equal(t, 10, n)
		cons, err = c.js.Consumer(ctx, publish.StreamName, "team-a")
		require.NoError(t, err)
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(10), info.AckFloor.Stream)

		// An ordered consumer, which nats.go recreates and deletes itself.
		oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wecom.hit.>"}})
		require.NoError(t, err)
		msg, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(msg.Subject(), "wecom.hit."+simCorp+"."))
		require.NoError(t, c.js.DeleteConsumer(ctx, publish.StreamName, "team-a"))

		// Corp lifecycle events, in their own stream, through a durable
		// pull consumer under the same API prefix. (The stream exists
		// with the corp registry on; this system has none.)
		require.NoError(t, s.m.Publisher().SetupCorp(ctx))
		require.NoError(t, s.m.Publisher().PublishCorp(ctx, wecomhit.CorpLifecycleEvent{
			Type: wecomhit.CorpAuthorized, App: "archive", CorpID: simCorp, Cause: "config",
		}, time.Now()))
		corpSt, err := c.js.Stream(ctx, publish.CorpStreamName)
		require.NoError(t, err)
		corpCons, err := corpSt.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: "team-a-corps", FilterSubject: "wecom.corp.>", AckPolicy: jetstream.AckExplicitPolicy,
		})
		require.NoError(t, err)
		cm, err := corpCons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		var cev wecomhit.CorpLifecycleEvent
		require.NoError(t, json.Unmarshal(cm.Data(), &cev))
		assert.Equal(t, wecomhit.CorpAuthorized, cev.Type)
		assert.Equal(t, simCorp, cev.CorpID)
		require.NoError(t, cm.DoubleAck(ctx))
		_, err = corpSt.GetMsg(ctx, 1)
		require.NoError(t, err, "msg get")
		require.NoError(t, c.js.DeleteConsumer(ctx, publish.CorpStreamName, "team-a-corps"))
		corpInfo, err := corpSt.Info(ctx)
		require.NoError(t, err)

		// No KV: not the WeCom tokens, not the hit tokens, not the cursors.
		for _, bucket := range []string{wecom.TokenBucket, wecom.TicketBucket, fetch.TokenBucket, fetch.CursorBucket} {
			c.denied(t, app.ConsumerAPIPrefix+".STREAM.INFO.KV_"+bucket, func(ctx context.Context) error {
				_, err := c.js.KeyValue(ctx, bucket)
				return err
			})
		}
		c.denied(t, "$JS.API.DIRECT.GET.KV_"+wecom.TokenBucket, func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_"+wecom.TokenBucket, []byte(`{"last_by_subj":"$KV.`+wecom.TokenBucket+`.x"}`))
			return err
		})
		// No callback records, neither through JetStream nor as they are
		// published, nor by looking over the receiver's shoulder.
		c.denied(t, app.ConsumerAPIPrefix+".STREAM.INFO."+intake.StreamName, func(ctx context.Context) error {
			_, err := c.js.Stream(ctx, intake.StreamName)
			return err
		})
		c.denied(t, "$JS.API.STREAM.MSG.GET."+intake.StreamName, func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+intake.StreamName, []byte(`{"seq":1}`))
			return err
		})
		c.denied(t, app.ConsumerAPIPrefix+".CONSUMER.CREATE."+intake.StreamName, func(ctx context.Context) error {
			_, err := c.js.OrderedConsumer(ctx, intake.StreamName, jetstream.OrderedConsumerConfig{})
			return err
		})
		for _, subj := range []string{"wecom.callback.>", "$KV.>", app.ReceiverInboxPrefix + ".>", app.OperatorInboxPrefix + ".>", ">"} {
			c.denied(t, subj, func(ctx context.Context) error {
				sub, err := c.nc.SubscribeSync(subj)
				if err != nil {
					return err
				}
				_, err = sub.NextMsgWithContext(ctx)
				return err
			})
		}
		// No forged hit events.
		c.denied(t, "wecom.hit."+simCorp, func(ctx context.Context) error {
			_, err := c.js.Publish(ctx, "wecom.hit."+simCorp+".x.y", []byte(`{}`))
			return err
		})
		// No forged corp events.
		c.denied(t, "wecom.corp."+simCorp, func(ctx context.Context) error {
			_, err := c.js.Publish(ctx, "wecom.corp."+simCorp+".cancelled", []byte(`{}`))
			return err
		})
		// No purging, no deleting.
		for _, name := range []string{publish.StreamName, publish.CorpStreamName, intake.StreamName, "KV_" + wecom.TokenBucket} {
			c.denied(t, "$JS.API.STREAM.PURGE."+name, func(ctx context.Context) error {
				_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+name, nil)
				return err
			})
			c.denied(t, app.ConsumerAPIPrefix+".STREAM.DELETE."+name, func(ctx context.Context) error {
				return c.js.DeleteStream(ctx, name)
			})
		}
		c.denied(t, app.ConsumerAPIPrefix+".STREAM.MSG.DELETE."+publish.StreamName, func(ctx context.Context) error {
			return st.DeleteMsg(ctx, 1)
		})
		assert.Equal(t, stored, hitsIn(t, s), "nothing was added or removed")
		c.denied(t, app.ConsumerAPIPrefix+".STREAM.MSG.DELETE."+publish.CorpStreamName, func(ctx context.Context) error {
			return corpSt.DeleteMsg(ctx, 1)
		})
		now, err := corpSt.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, corpInfo.State, now.State, "no corp event was added or removed")

		// A push consumer's deliver subject is not checked against its
		// creator's permissions, but the server's deliveries are not stored
		// by other streams: pointed at a KV key or a callback subject, they
		// reach plain subscribers (the witness) and change nothing stored.
		rjs := s.m.Broker().JetStream()
		callbacks, err := rjs.Stream(ctx, intake.StreamName)
		require.NoError(t, err)
		cbInfo, err := callbacks.Info(ctx)
		require.NoError(t, err)
		for i, subj := range []string{"$KV." + wecom.TokenBucket + ".forged", "wecom.callback.archive.hit_keyword"} {
			witness, err := s.m.Broker().Conn().SubscribeSync(subj)
			require.NoError(t, err)
			_, err = st.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{
				Durable: fmt.Sprintf("push-%d", i), DeliverSubject: subj, AckPolicy: jetstream.AckNonePolicy,
			})
			require.NoError(t, err)
			_, err = witness.NextMsg(10 * time.Second)
			require.NoError(t, err, "delivered to %s", subj)
			require.NoError(t, witness.Unsubscribe())
			require.NoError(t, c.js.DeleteConsumer(ctx, publish.StreamName, fmt.Sprintf("push-%d", i)))
		}
		tokens, err := rjs.KeyValue(ctx, wecom.TokenBucket)
		require.NoError(t, err)
		_, err = tokens.Get(ctx, "forged")
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound)
		// Only GenerateMessages, done before cbInfo, makes hit_keyword callbacks.
		last, err := callbacks.GetLastMsgForSubject(ctx, "wecom.callback.archive.hit_keyword")
		require.NoError(t, err)
		assert.LessOrEqual(t, last.Sequence, cbInfo.State.LastSeq, "no record was added to %s", intake.StreamName)
	})

	t.Run("Operator", func(t *testing.T) {
		c := dialRole(t, s, broker.SeedFile(s.m.Cfg().NATS.RolesDir(), app.RoleOperator), nats.CustomInboxPrefix(app.OperatorInboxPrefix))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		// What status reads: the cursors and the callback backlog.
		kv, err := c.js.KeyValue(ctx, fetch.CursorBucket)
		require.NoError(t, err)
		_, err = kv.ListKeys(ctx)
		require.NoError(t, err)
		_, err = c.js.Consumer(ctx, intake.StreamName, intakeDurable)
		require.NoError(t, err)

		// Corp lifecycle events are read like the other streams.
		corpSt, err := c.js.Stream(ctx, publish.CorpStreamName)
		require.NoError(t, err)
		oc, err := corpSt.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		require.NoError(t, err)
		_, err = oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err, "the consumer subtest published one")

		for _, name := range []string{publish.StreamName, publish.CorpStreamName, intake.StreamName, "KV_" + fetch.CursorBucket} {
			c.denied(t, "$JS.API.STREAM.PURGE."+name, func(ctx context.Context) error {
				_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+name, nil)
				return err
			})
			c.denied(t, "$JS.API.STREAM.DELETE."+name, func(ctx context.Context) error {
				return c.js.DeleteStream(ctx, name)
			})
		}
		c.denied(t, "$JS.API.CONSUMER.DELETE."+intake.StreamName, func(ctx context.Context) error {
			return c.js.DeleteConsumer(ctx, intake.StreamName, intakeDurable)
		})
		c.denied(t, "$JS.API.STREAM.UPDATE."+publish.StreamName, func(ctx context.Context) error {
			_, err := c.js.UpdateStream(ctx, jetstream.StreamConfig{Name: publish.StreamName, Subjects: []string{"wecom.hit.>"}})
			return err
		})
		// No reconfiguring a KV bucket's stream (a short max age would
		// drop the cursors), and no pausing the intake consumer (which
		// would stop every fetch).
		kvStream, err := c.js.Stream(ctx, "KV_"+fetch.CursorBucket)
		require.NoError(t, err)
		kvCfg := kvStream.CachedInfo().Config
		kvCfg.MaxAge, kvCfg.Duplicates = time.Second, time.Second
		c.denied(t, "$JS.API.STREAM.UPDATE.KV_"+fetch.CursorBucket, func(ctx context.Context) error {
			_, err := c.js.UpdateStream(ctx, kvCfg)
			return err
		})
		c.denied(t, "$JS.API.CONSUMER.PAUSE."+intake.StreamName+"."+intakeDurable, func(ctx context.Context) error {
			_, err := c.js.PauseConsumer(ctx, intake.StreamName, intakeDurable, time.Now().Add(time.Hour))
			return err
		})
		cons, err := c.js.Consumer(ctx, intake.StreamName, intakeDurable)
		require.NoError(t, err)
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		assert.False(t, info.Paused)
		// No writing the buckets only the receiver writes: a put resets a
		// cursor, and one with a rollup header empties the bucket.
		cursors, err := s.m.Broker().JetStream().KeyValue(ctx, fetch.CursorBucket)
		require.NoError(t, err)
		cursorKey := "archive." + simCorp
		cur, err := cursors.Get(ctx, cursorKey)
		require.NoError(t, err)
		rollup := nats.NewMsg("$KV." + fetch.CursorBucket + ".x")
		rollup.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
		c.denied(t, "$KV."+fetch.CursorBucket+".x", func(ctx context.Context) error {
			_, err := c.js.PublishMsg(ctx, rollup)
			return err
		})
		c.denied(t, "$KV."+fetch.CursorBucket+"."+cursorKey, func(ctx context.Context) error {
			_, err := c.js.Publish(ctx, "$KV."+fetch.CursorBucket+"."+cursorKey, []byte(`{}`))
			return err
		})
		for _, bucket := range []string{fetch.LeaseBucket, fetch.TokenBucket, fetch.HealthBucket, wecom.TicketBucket, corps.CodeBucket} {
			c.denied(t, "$KV."+bucket+".x", func(ctx context.Context) error {
				_, err := c.js.Publish(ctx, "$KV."+bucket+".x", []byte(`{}`))
				return err
			})
		}
		now, err := cursors.Get(ctx, cursorKey)
		require.NoError(t, err)
		assert.Equal(t, cur.Value(), now.Value(), "the cursor is untouched")
		c.denied(t, "_INBOX.>", func(ctx context.Context) error {
			sub, err := c.nc.SubscribeSync("_INBOX.>")
			if err != nil {
				return err
			}
			_, err = sub.NextMsgWithContext(ctx)
			return err
		})
		assert.Equal(t, stored, hitsIn(t, s))
	})
}

// TestRun_OpsCreds: on another host the operator commands take -creds; with
// no credentials the listener refuses them, and the error says what to do.
func TestRun_OpsCreds(t *testing.T) {
	s := startSystem(t, "0s")
	path := filepath.Join(t.TempDir(), "remote.yaml")
	require.NoError(t, writeFile(path, fmt.Sprintf(`
nats: {url: %q}
apps:
  - name: archive
    mode: archive
    token: t
    encoding_aes_key: k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz
    api_base_url: http://127.0.0.1:9
    suite_id: %s
    suite_secret: x
    corps: [{corp_id: %s, permanent_code: p}]
`, s.m.Broker().ClientURL(), simSuite, simCorp)))
	status := func(args ...string) (int, string, string) {
		var stdout, stderr testlog.Buffer
		code := run(t.Context(), append([]string{"status", "-config", path, "-o", "json"}, args...),
			cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
		return code, stdout.String(), stderr.String()
	}

	code, _, stderr := status()
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "Authorization Violation")

	code, _, stderr = status("-creds", filepath.Join(t.TempDir(), "missing.nk"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "-creds FILE")

	code, stdout, stderr := status("-creds", broker.SeedFile(s.m.Cfg().NATS.RolesDir(), app.RoleOperator))
	require.Equal(t, 0, code, stderr)
	var rep health.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	assert.Len(t, rep.Corps, 1)

	// The consumer role is not enough for status, which reads KV; the
	// server's refusal is reported. The refused request only times out,
	// which status cannot tell from a NATS that does not answer: exit 4.
	code, _, stderr = status("-creds", broker.SeedFile(s.m.Cfg().NATS.RolesDir(), app.RoleConsumer))
	assert.Equal(t, cli.ExitUnknown, code)
	assert.Contains(t, stderr, "Permissions Violation")
}

func TestRun_CredsErrors(t *testing.T) {
	const app = `
apps:
  - name: archive
    mode: archive
    token: t
    encoding_aes_key: k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz
    api_base_url: http://127.0.0.1:9
    suite_id: s
    suite_secret: x
    corps: [{corp_id: c, permanent_code: p}]
`
	dir := t.TempDir()
	for _, tt := range []struct {
		name, nats string
		args       []string
		code       int
		want       string
	}{
		{"ErrRole", "nats: {listen: 127.0.0.1:4222}", []string{"receiver"}, 2, "ROLE one of [consumer operator]"},
		{"ErrNoRole", "nats: {listen: 127.0.0.1:4222}", nil, 2, "ROLE one of"},
		{"ErrExternal", "nats: {url: nats://127.0.0.1:4222}", []string{"consumer"}, 2, "only the embedded server's listener"},
		{"ErrNoListen", "nats: {store_dir: nats}", []string{"consumer"}, 2, "only the embedded server's listener"},
		{"ErrNotStarted", "nats: {store_dir: never, listen: 127.0.0.1:4222}", []string{"operator"}, 1, "has the receiver started"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".yaml")
			require.NoError(t, writeFile(path, tt.nats+app))
			var stdout, stderr testlog.Buffer
			args := append([]string{"creds"}, tt.args...)
			code := run(t.Context(), append(args, "-config", path), cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
			assert.Equal(t, tt.code, code)
			assert.Contains(t, stderr.String(), tt.want)
			assert.Empty(t, stdout.String())
		})
	}
}

// intakeDurable is the receiver's durable consumer on WECOM_CALLBACKS
// (intake's default name).
const intakeDurable = "receiver"
