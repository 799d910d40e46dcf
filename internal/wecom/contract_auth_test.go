package wecom_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/secret"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// codeInvalidAuthCode is what the simulator answers a spent auth code.
const codeInvalidAuthCode = 40029

// TestContract_Authorization: the client's suite calls about corp
// authorization against the simulator over HTTP.
func TestContract_Authorization(t *testing.T) {
	archive := transports[0]

	t.Run("ExchangeV2", func(t *testing.T) {
		e := newEnv(t, archive)
		logs := &testlog.Buffer{}
		c := e.client(wecom.WithLogger(zerolog.New(logs)))
		in, err := e.sim.AuthorizeCorp(wecomsim.Install{CorpID: "wwInstalled", CorpName: "Installed Co"})
		require.NoError(t, err)

		pc, err := c.GetPermanentCode(natstest.Context(t), in.AuthCode)
		require.NoError(t, err)
		assert.Equal(t, "wwInstalled", pc.CorpID)
		assert.Equal(t, "Installed Co", pc.CorpName)
		assert.Equal(t, "get_permanent_code_v2", pc.API)
		require.NotEmpty(t, pc.PermanentCode.Reveal())
		for _, verb := range []string{"%v", "%+v", "%#v"} {
			assert.NotContains(t, fmt.Sprintf(verb, pc), pc.PermanentCode.Reveal(), "the code never prints")
		}

		t.Run("SingleUse", func(t *testing.T) {
			before := e.requests()
			_, err := c.GetPermanentCode(natstest.Context(t), in.AuthCode)
			require.ErrorIs(t, err, &wecom.APIError{Code: codeInvalidAuthCode})
			after := e.requests()
			assert.Equal(t, 1, after["get_permanent_code_v2"]-before["get_permanent_code_v2"])
			assert.Equal(t, 0, after["get_permanent_code"]-before["get_permanent_code"],
				"an invalid code is not tried on v1: it would be spent there too")
			assert.NotContains(t, err.Error(), in.AuthCode)
		})
		t.Run("GetAuthInfo", func(t *testing.T) {
			info, err := c.GetAuthInfo(natstest.Context(t), pc.CorpID, pc.PermanentCode)
			require.NoError(t, err)
			assert.Equal(t, "wwInstalled", info.CorpID)
			assert.Equal(t, "Installed Co", info.CorpName)
			assert.NotEmpty(t, info.Agents)
			_, err = c.GetAuthInfo(natstest.Context(t), pc.CorpID, "not-the-code")
			require.ErrorIs(t, err, &wecom.APIError{Code: 40084})
			assert.NotContains(t, err.Error(), "not-the-code")
		})
		t.Run("CancelledCorp", func(t *testing.T) {
			require.NoError(t, e.sim.CancelCorp("wwInstalled"))
			_, err := c.GetAuthInfo(natstest.Context(t), pc.CorpID, pc.PermanentCode)
			require.ErrorIs(t, err, &wecom.APIError{Code: 40084})
		})
		assert.NotContains(t, logs.String(), pc.PermanentCode.Reveal())
		assert.NotContains(t, logs.String(), in.AuthCode)
	})

	t.Run("FallbackToV1", func(t *testing.T) {
		for name, fault := range map[string]wecomsim.Fault{
			"HTTP404":      {Kind: wecomsim.FaultHTTPError, API: "get_permanent_code_v2", Status: http.StatusNotFound},
			"Errcode48002": {Kind: wecomsim.FaultErrcode, API: "get_permanent_code_v2", Errcode: 48002},
		} {
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, archive)
				logs := &testlog.Buffer{}
				c := e.client(wecom.WithLogger(zerolog.New(logs)))
				require.NoError(t, e.sim.SetFaults(fault))
				in, err := e.sim.AuthorizeCorp(wecomsim.Install{CorpID: "wwOld"})
				require.NoError(t, err)
				pc, err := c.GetPermanentCode(natstest.Context(t), in.AuthCode)
				require.NoError(t, err)
				assert.Equal(t, "get_permanent_code", pc.API)
				assert.Equal(t, "wwOld", pc.CorpID)
				assert.Equal(t, 1, e.requests()["get_permanent_code"])
				assert.NotContains(t, logs.String(), in.AuthCode)
				assert.NotContains(t, logs.String(), pc.PermanentCode.Reveal())
			})
		}
	})

	t.Run("NoFallbackOnOtherErrors", func(t *testing.T) {
		e := newEnv(t, archive)
		c := e.client()
		require.NoError(t, e.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultHTTPError, API: "get_permanent_code_v2", Status: http.StatusBadGateway}))
		in, err := e.sim.AuthorizeCorp(wecomsim.Install{})
		require.NoError(t, err)
		_, err = c.GetPermanentCode(natstest.Context(t), in.AuthCode)
		var se *wecom.StatusError
		require.True(t, errors.As(err, &se), "%v", err)
		assert.Equal(t, http.StatusBadGateway, se.StatusCode)
		assert.Equal(t, wecom.DefaultAttempts, e.requests()["get_permanent_code_v2"], "a 502 is retried on v2")
		assert.Zero(t, e.requests()["get_permanent_code"], "and never sent to v1")
	})

	t.Run("SuiteTokenRefreshedOnce", func(t *testing.T) {
		e := newEnv(t, archive)
		c := e.client()
		in, err := e.sim.AuthorizeCorp(wecomsim.Install{})
		require.NoError(t, err)
		// Warm the suite token, then have WeCom expire it early.
		_, err = c.GetAuthInfo(natstest.Context(t), ctCorpA, ctPermA)
		require.NoError(t, err)
		require.NoError(t, e.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultExpireAccessToken, API: "get_permanent_code_v2", Count: 1}))
		before := e.requests()
		pc, err := c.GetPermanentCode(natstest.Context(t), in.AuthCode)
		require.NoError(t, err, "42009 drops the suite token and the call is made again")
		assert.NotEmpty(t, pc.PermanentCode.Reveal())
		after := e.requests()
		assert.Equal(t, 1, after["get_suite_token"]-before["get_suite_token"])
		assert.Equal(t, 2, after["get_permanent_code_v2"]-before["get_permanent_code_v2"])
	})

	t.Run("Validation", func(t *testing.T) {
		e := newEnv(t, archive)
		c := e.client()
		long := string(make([]byte, 513))
		for name, call := range map[string]func() error{
			"ErrEmptyAuthCode":      func() error { _, err := c.GetPermanentCode(natstest.Context(t), ""); return err },
			"ErrLongAuthCode":       func() error { _, err := c.GetPermanentCode(natstest.Context(t), long); return err },
			"ErrEmptyCorp":          func() error { _, err := c.GetAuthInfo(natstest.Context(t), "", "code"); return err },
			"ErrEmptyPermanentCode": func() error { _, err := c.GetAuthInfo(natstest.Context(t), ctCorpA, ""); return err },
			"ErrLongPermanentCode": func() error {
				_, err := c.GetAuthInfo(natstest.Context(t), ctCorpA, secret.Secret("x"+long))
				return err
			},
		} {
			t.Run(name, func(t *testing.T) {
				before := e.requests()
				require.ErrorIs(t, call(), wecom.ErrValidation)
				assert.Equal(t, before, e.requests(), "nothing sent")
			})
		}
		zone := newEnv(t, transports[1]).client()
		_, err := zone.GetPermanentCode(natstest.Context(t), "code")
		require.ErrorIs(t, err, wecom.ErrNoSuite)
		_, err = zone.GetAuthInfo(natstest.Context(t), ctZoneCorp, "code")
		require.ErrorIs(t, err, wecom.ErrNoSuite)
	})
}

// TestContract_RegistryCorps: a corp installed at run time is exchanged
// into the corp registry, and a client that takes permanent codes from the
// registry's mirror serves it with no configured corps; after cancel_auth
// it stops.
func TestContract_RegistryCorps(t *testing.T) {
	e := newEnv(t, transports[0])
	_, js := natstest.Connect(t, e.nats)
	keys, err := corps.NewKeyring(map[string][]byte{"k1": make([]byte, corps.KeySize)}, "k1")
	require.NoError(t, err)
	reg, err := corps.Open(natstest.Context(t), js, keys)
	require.NoError(t, err)
	mirror, err := reg.Mirror(natstest.Context(t), "archive", nil)
	require.NoError(t, err)
	t.Cleanup(mirror.Stop)

	app := e.app()
	app.Corps = nil
	stores, err := wecom.OpenStores(natstest.Context(t), js, wecom.StoreConfig{})
	require.NoError(t, err)
	require.NoError(t, stores.Tickets.Put(natstest.Context(t), ctSuiteID, e.sim.SuiteTicket(), time.Now(), e.sim.Now()))
	c, err := wecom.New(app, stores, append(fastOptions(), wecom.WithPermanentCodes(mirror))...)
	require.NoError(t, err)

	in, err := e.sim.AuthorizeCorp(wecomsim.Install{CorpID: "wwRuntimeCorp", DemoRules: true})
	require.NoError(t, err)
	out, err := reg.Authorize(natstest.Context(t), corps.Authorization{App: "archive", AuthCode: in.AuthCode, Cause: corps.CauseCreateAuth,
		Exchange: func(ctx context.Context) (corps.Grant, error) {
			pc, err := c.GetPermanentCode(ctx, in.AuthCode)
			return corps.Grant{CorpID: pc.CorpID, CorpName: pc.CorpName, PermanentCode: pc.PermanentCode}, err
		}})
	require.NoError(t, err)
	assert.Equal(t, "wwRuntimeCorp", out.Corp.CorpID)

	natstest.WaitFor(t, 5*time.Second, func() error {
		if _, err := mirror.PermanentCode(natstest.Context(t), "archive", "wwRuntimeCorp"); err != nil {
			return err
		}
		return nil
	})
	rules, err := collect(c.ListRules(natstest.Context(t), "wwRuntimeCorp", 100))
	require.NoError(t, err, "served from the registry, not the config")
	assert.Len(t, rules, len(wecomsim.DemoRules()))

	_, err = collect(c.ListRules(natstest.Context(t), "wwNotInstalled", 100))
	require.ErrorIs(t, err, wecom.ErrUnknownCorp)
	require.ErrorIs(t, err, corps.ErrNotFound)

	// With the registry, the configured corps are only seeds: a call that
	// names no corp is refused even when exactly one is configured, as
	// corps.Directory.Resolve refuses it, instead of going to that seed.
	seeded := e.app()
	seeded.Corps = seeded.Corps[:1]
	withSeed, err := wecom.New(seeded, stores, append(fastOptions(), wecom.WithPermanentCodes(mirror))...)
	require.NoError(t, err)
	_, err = collect(withSeed.ListRules(natstest.Context(t), "", 100))
	require.ErrorIs(t, err, wecom.ErrUnknownCorp)
	require.NotErrorIs(t, err, corps.ErrNotFound, "refused before any lookup of the seed's code")

	require.NoError(t, e.sim.CancelCorp("wwRuntimeCorp"))
	_, err = reg.Cancel(natstest.Context(t), "archive", "wwRuntimeCorp", e.sim.Now(), corps.CauseCancelAuth)
	require.NoError(t, err)
	natstest.WaitFor(t, 5*time.Second, func() error {
		if _, err := mirror.PermanentCode(natstest.Context(t), "archive", "wwRuntimeCorp"); err == nil {
			return errors.New("still has a code")
		}
		return nil
	})
	_, err = collect(c.ListRules(natstest.Context(t), "wwRuntimeCorp", 100))
	require.ErrorIs(t, err, wecom.ErrUnknownCorp, "the cancelled corp's token is refused (40014) and the registry has no code for a new one")
}
