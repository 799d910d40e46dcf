package app

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// testConfig is configs/receiver.local-sim.yaml: the embedded server with
// a listener, one archive app with one corp, no registry.
func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.LoadEnv("../../configs/receiver.local-sim.yaml", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	return cfg
}

func TestOperatorBrokerOptions(t *testing.T) {
	t.Run("EmbeddedListener", func(t *testing.T) {
		cfg := testConfig(t)
		o, err := OperatorBrokerOptions(cfg, "wecom-receiver-x", "")
		require.NoError(t, err)
		assert.Equal(t, []string{"nats://" + cfg.NATS.Listen}, o.URLs)
		assert.Equal(t, broker.SeedFile(cfg.NATS.RolesDir(), RoleOperator), o.CredentialsFile, "the operator seed the receiver wrote")
		assert.Equal(t, OperatorInboxPrefix, o.InboxPrefix)
		assert.Equal(t, "wecom-receiver-x", o.Name)
		assert.Empty(t, o.StoreDir, "never the receiver's store")
	})
	t.Run("CredsWins", func(t *testing.T) {
		o, err := OperatorBrokerOptions(testConfig(t), "x", "/tmp/mine.nk")
		require.NoError(t, err)
		assert.Equal(t, "/tmp/mine.nk", o.CredentialsFile)
	})
	t.Run("ExternalURL", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.NATS.URL, cfg.NATS.CredentialsFile = "nats://127.0.0.1:4333", "/etc/receiver/ops.creds"
		o, err := OperatorBrokerOptions(cfg, "x", "")
		require.NoError(t, err)
		assert.Equal(t, []string{"nats://127.0.0.1:4333"}, o.URLs)
		assert.Equal(t, "/etc/receiver/ops.creds", o.CredentialsFile)
	})
	t.Run("ErrNoNATS", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.NATS.Listen = ""
		_, err := OperatorBrokerOptions(cfg, "x", "")
		require.ErrorIs(t, err, ErrNoNATS)
	})
}

// TestBrokerOptions: the service's options carry the store, the listener's
// roles and the receiver's own inbox prefix.
func TestBrokerOptions(t *testing.T) {
	cfg := testConfig(t)
	o := BrokerOptions(cfg)
	assert.Equal(t, cfg.NATS.StoreDir, o.StoreDir)
	assert.True(t, filepath.IsAbs(o.StoreDir))
	assert.Equal(t, cfg.NATS.Listen, o.Listen)
	assert.Equal(t, ReceiverInboxPrefix, o.InboxPrefix)
	require.Len(t, o.Roles, 2)
	assert.Equal(t, RoleConsumer, o.Roles[0].Name)
	assert.Equal(t, RoleOperator, o.Roles[1].Name)
}

// TestIntakeOptions: a record may be as large as the largest callback the
// HTTP edge lets in; the rest is the nats section's. The options are read
// back from the stream a store built with them creates on a real server.
func TestIntakeOptions(t *testing.T) {
	cfg := testConfig(t)
	_, js := natstest.Connect(t, natstest.RunServer(t))
	store, err := intake.New(js, cfg.NATS.SubjectPrefix, IntakeOptions(cfg, false)...)
	require.NoError(t, err)
	ctx := natstest.Context(t)
	require.NoError(t, store.Setup(ctx))
	st, err := js.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	got := st.CachedInfo().Config
	assert.EqualValues(t, intake.RecordLimit(cfg.HTTP.MaxBodyBytes), got.MaxMsgSize)
	assert.Equal(t, cfg.NATS.CallbacksMaxBytes, got.MaxBytes)
	assert.Equal(t, cfg.NATS.CallbackMaxAge, got.MaxAge)
	assert.Equal(t, cfg.NATS.DuplicateWindow, got.Duplicates)
	assert.Equal(t, cfg.NATS.Replicas, got.Replicas)
	sc := StoreConfig(cfg)
	assert.Equal(t, cfg.NATS.KVMaxBytes, sc.MaxBytes)
	assert.Equal(t, cfg.NATS.Replicas, sc.Replicas)
}

// TestIntakeOptions_Dedup: the process that owns the embedded server's
// store keeps the callback ids itself, and a record carries its id in
// intake.IDHeader; any other (receivers on an external NATS, an operator
// command) leaves them to the server, by Nats-Msg-Id.
func TestIntakeOptions_Dedup(t *testing.T) {
	for _, tc := range []struct {
		owner  bool
		header string
	}{{true, intake.IDHeader}, {false, jetstream.MsgIDHeader}} {
		t.Run(tc.header, func(t *testing.T) {
			cfg := testConfig(t)
			_, js := natstest.Connect(t, natstest.RunServer(t))
			store, err := intake.New(js, cfg.NATS.SubjectPrefix, IntakeOptions(cfg, tc.owner)...)
			require.NoError(t, err)
			ctx := natstest.Context(t)
			require.NoError(t, store.Setup(ctx))
			cb := &wecomhit.Callback{ID: "0123456789abcdef0123456789abcdef", App: "archive", Kind: wecomhit.KindHitKeyword}
			require.NoError(t, store.Store(ctx, cb))
			st, err := js.Stream(ctx, intake.StreamName)
			require.NoError(t, err)
			m, err := st.GetMsg(ctx, 1)
			require.NoError(t, err)
			assert.Equal(t, []string{cb.ID}, m.Header.Values(tc.header))
			assert.Equal(t, cb.ID, intake.RecordID(m.Header))
			for _, other := range []string{intake.IDHeader, jetstream.MsgIDHeader} {
				if other != tc.header {
					assert.Empty(t, m.Header.Values(other))
				}
			}
		})
	}
}

// TestGetCorp: without a registry, the configuration's corps are all there
// is; anything else is corps.ErrNotFound.
func TestGetCorp(t *testing.T) {
	cfg := testConfig(t)
	e, err := GetCorp(t.Context(), cfg, nil, "archive", "wwCorpABC123")
	require.NoError(t, err)
	assert.Equal(t, CorpEntry{App: "archive", CorpID: "wwCorpABC123", State: "active", Source: "config", Fixed: true}, e)
	for _, tc := range []struct{ app, corp string }{{"archive", "wwOther"}, {"nope", "wwCorpABC123"}} {
		_, err := GetCorp(t.Context(), cfg, nil, tc.app, tc.corp)
		assert.ErrorIs(t, err, corps.ErrNotFound, "%s/%s", tc.app, tc.corp)
	}
	all, err := ListCorps(t.Context(), cfg, nil, "")
	require.NoError(t, err)
	assert.Equal(t, []CorpEntry{e}, all, "get shows a corp as list does")
}

// nopPublisher is a fetch.Publisher that is never called.
type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, *wecomhit.HitPage) (wecomhit.PageResult, error) {
	return wecomhit.PageResult{}, nil
}

// TestFetchOptions: the file's fetch keys are valid fetcher options, and
// each reaches the fetcher (a value the configuration would refuse is
// refused by the option it became).
func TestFetchOptions(t *testing.T) {
	cfg := testConfig(t)
	_, err := fetch.New(nil, nil, nopPublisher{}, FetchOptions(cfg)...)
	require.NoError(t, err)
	for name, bad := range map[string]func(*config.Config){
		"WithWorkers":            func(c *config.Config) { c.Fetch.Workers = 0 },
		"WithTokenlessBudget":    func(c *config.Config) { c.Fetch.TokenlessBudgetPerMinute = 0 },
		"WithTokenlessPerMinute": func(c *config.Config) { c.Fetch.TokenlessPerMinute = 0 },
		"WithPageSize":           func(c *config.Config) { c.Fetch.PageSize = 1001 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			bad(cfg)
			_, err := fetch.New(nil, nil, nopPublisher{}, FetchOptions(cfg)...)
			require.ErrorIs(t, err, fetch.ErrInvalidOption)
			assert.Contains(t, err.Error(), name)
		})
	}
}

// TestBatchingOptions: nats.hit_batching and nats.callback_batching reach
// the publisher and the store, whose Setup gives WECOM_HITS and
// WECOM_CALLBACKS allow_batched or not (and so whether every server that
// runs them needs nats-server 2.14); both on by default.
func TestBatchingOptions(t *testing.T) {
	type setup interface{ Setup(context.Context) error }
	streams := []struct {
		name   string
		stream string
		key    func(*config.Config) *bool
		open   func(*config.Config, jetstream.JetStream) (setup, error)
	}{
		{"HitBatching", publish.StreamName, func(c *config.Config) *bool { return &c.NATS.HitBatching },
			func(c *config.Config, js jetstream.JetStream) (setup, error) {
				return publish.New(js, c.NATS.SubjectPrefix, PublishOptions(c)...)
			}},
		{"CallbackBatching", intake.StreamName, func(c *config.Config) *bool { return &c.NATS.CallbackBatching },
			func(c *config.Config, js jetstream.JetStream) (setup, error) {
				return intake.New(js, c.NATS.SubjectPrefix, IntakeOptions(c, false)...)
			}},
	}
	for _, sc := range streams {
		for _, on := range []bool{true, false} {
			t.Run(sc.name+"/"+strconv.FormatBool(on), func(t *testing.T) {
				cfg := testConfig(t)
				require.True(t, *sc.key(cfg), "the default")
				*sc.key(cfg) = on
				_, js := natstest.Connect(t, natstest.RunServer(t))
				x, err := sc.open(cfg, js)
				require.NoError(t, err)
				ctx := natstest.Context(t)
				require.NoError(t, x.Setup(ctx))
				st, err := js.Stream(ctx, sc.stream)
				require.NoError(t, err)
				assert.Equal(t, on, st.CachedInfo().Config.AllowBatchPublish)
			})
		}
	}
}
