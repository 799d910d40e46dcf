package corps_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

const (
	app      = "archive"
	corpA    = "wwCorpA"
	corpB    = "wwCorpB"
	permA    = "PERMANENT-CODE-A-5b1f9c0e7d"
	permB    = "PERMANENT-CODE-B-a83e22f401"
	authCode = "AUTH-CODE-77c1d0"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, corps.KeySize) }

func keyring(t testing.TB, current string, ids ...string) *corps.Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range ids {
		keys[id] = key(id[len(id)-1])
	}
	k, err := corps.NewKeyring(keys, current)
	require.NoError(t, err)
	return k
}

// env is a NATS server and a way to open registries on it, as replicas.
type env struct {
	srv *server.Server
	dir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{srv: natstest.RunServer(t, natstest.WithStoreDir(dir)), dir: dir}
}

func (e *env) js(t testing.TB) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, e.srv)
	return js
}

// open opens a registry on its own connection, as a replica would.
func (e *env) open(t testing.TB, k *corps.Keyring, opts ...corps.Option) *corps.Registry {
	t.Helper()
	r, err := corps.Open(context.Background(), e.js(t), k, opts...)
	require.NoError(t, err)
	return r
}

func active(app, corp string) corps.Corp {
	return corps.Corp{App: app, CorpID: corp, CorpName: "Acme " + corp, State: corps.Active, Source: corps.SourceConfig}
}

func TestRegistry_PermanentCodeSealedAtRest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	_, err := r.Put(ctx, active(app, corpA), permA, 0)
	require.NoError(t, err)

	c, err := r.Get(ctx, app, corpA)
	require.NoError(t, err)
	assert.Equal(t, "k1", c.KeyID(), "the key id is stored beside the ciphertext")
	code, err := r.PermanentCode(c)
	require.NoError(t, err)
	assert.Equal(t, permA, code.Reveal())

	// The stored message, as any NATS client with access reads it.
	js := e.js(t)
	st, err := js.Stream(ctx, "KV_"+corps.Bucket)
	require.NoError(t, err)
	msg, err := st.GetLastMsgForSubject(ctx, "$KV."+corps.Bucket+"."+app+"."+corpA)
	require.NoError(t, err)
	assert.NotContains(t, string(msg.Data), permA)
	assert.Contains(t, string(msg.Data), `"key_id":"k1"`)

	// And the server's files on disk.
	found := false
	require.NoError(t, filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		assert.False(t, bytes.Contains(b, []byte(permA)), "permanent code in plain text in %s", p)
		found = found || bytes.Contains(b, []byte(corpA))
		return nil
	}))
	require.True(t, found, "the scan must have looked at the bucket's files")
}

func TestRegistry_Keys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	_, err := r.Put(ctx, active(app, corpA), permA, 0)
	require.NoError(t, err)

	t.Run("ErrDecryptWrongKeySameID", func(t *testing.T) {
		other, err := corps.NewKeyring(map[string][]byte{"k1": key('x')}, "k1")
		require.NoError(t, err)
		c, err := e.open(t, other).Get(ctx, app, corpA)
		require.NoError(t, err, "metadata reads without the key")
		_, err = e.open(t, other).PermanentCode(c)
		require.ErrorIs(t, err, corps.ErrDecrypt)
		assert.NotContains(t, err.Error(), permA)
	})
	t.Run("ErrUnknownKeyRotatedOut", func(t *testing.T) {
		r2 := e.open(t, keyring(t, "k2", "k2"))
		c, err := r2.Get(ctx, app, corpA)
		require.NoError(t, err)
		_, err = r2.PermanentCode(c)
		require.ErrorIs(t, err, corps.ErrUnknownKey)
		assert.Contains(t, err.Error(), `"k1"`, "names the missing key id")
	})
	t.Run("ErrNoKeys", func(t *testing.T) {
		r0 := e.open(t, nil)
		list, err := r0.List(ctx, app)
		require.NoError(t, err, "listing needs no key")
		require.Len(t, list, 1)
		_, err = r0.PermanentCode(list[0])
		require.ErrorIs(t, err, corps.ErrNoKeys)
		_, err = r0.Put(ctx, active(app, corpB), permB, 0)
		require.ErrorIs(t, err, corps.ErrNoKeys)
	})
	t.Run("ErrDecryptMovedCiphertext", func(t *testing.T) {
		c, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		moved := active(app, corpB)
		moved.Code = c.Code
		_, err = r.Put(ctx, moved, "", 0)
		require.NoError(t, err)
		got, err := r.Get(ctx, app, corpB)
		require.NoError(t, err)
		_, err = r.PermanentCode(got)
		require.ErrorIs(t, err, corps.ErrDecrypt, "a sealed code is bound to its (app, corp)")
		require.NoError(t, r.Delete(ctx, app, corpB))
	})
}

func TestRegistry_Rekey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := e.open(t, keyring(t, "k1", "k1"))
	for _, c := range []string{corpA, corpB} {
		_, err := old.Put(ctx, active(app, c), config.Secret("code-of-"+c), 0)
		require.NoError(t, err)
	}
	rotating := e.open(t, keyring(t, "k2", "k1", "k2"))
	n, err := rotating.Rekey(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = rotating.Rekey(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, n, "a second run has nothing to do")

	onlyNew := e.open(t, keyring(t, "k2", "k2"))
	for _, id := range []string{corpA, corpB} {
		c, err := onlyNew.Get(ctx, app, id)
		require.NoError(t, err)
		assert.Equal(t, "k2", c.KeyID())
		assert.Equal(t, corps.CauseRekey, c.LastChange)
		code, err := onlyNew.PermanentCode(c)
		require.NoError(t, err)
		assert.Equal(t, "code-of-"+id, code.Reveal())
	}

	t.Run("ErrUnknownKeyReported", func(t *testing.T) {
		_, err := old.Put(ctx, active(app, "wwCorpOld"), "old-code", 0)
		require.NoError(t, err)
		_, err = e.open(t, keyring(t, "k3", "k2", "k3")).Rekey(ctx)
		require.ErrorIs(t, err, corps.ErrUnknownKey, "an entry under a dropped key is reported, not skipped silently")
	})
}

func TestNewKeyring(t *testing.T) {
	for name, tc := range map[string]struct {
		keys    map[string][]byte
		current string
	}{
		"ErrNoKeys":       {nil, "k"},
		"ErrShortKey":     {map[string][]byte{"k": key('a')[:16]}, "k"},
		"ErrBadID":        {map[string][]byte{"k.1": key('a')}, "k.1"},
		"ErrNoCurrent":    {map[string][]byte{"k": key('a')}, "other"},
		"ErrEmptyCurrent": {map[string][]byte{"k": key('a')}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := corps.NewKeyring(tc.keys, tc.current)
			require.ErrorIs(t, err, corps.ErrBadKey)
			assert.NotContains(t, err.Error(), string(key('a')))
		})
	}
	t.Run("Base64", func(t *testing.T) {
		k, err := corps.NewKeyringBase64(map[string]string{"k1": base64.StdEncoding.EncodeToString(key('q')) + "\n"}, "k1")
		require.NoError(t, err)
		assert.Equal(t, "k1", k.Current())
		for name, v := range map[string]string{
			"ErrNotBase64": "not base64 !!",
			"ErrShort":     base64.StdEncoding.EncodeToString(key('q')[:31]),
		} {
			t.Run(name, func(t *testing.T) {
				_, err := corps.NewKeyringBase64(map[string]string{"k1": v}, "k1")
				require.ErrorIs(t, err, corps.ErrBadKey)
				assert.NotContains(t, err.Error(), v)
			})
		}
	})
	k := keyring(t, "b1", "a1", "b1")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k)} {
		assert.NotContains(t, s, string(key('1')))
		assert.Contains(t, s, "b1")
	}
}

// TestRegistry_NoSecretInOutput: what callers print or log never shows a
// permanent code.
func TestRegistry_NoSecretInOutput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	_, err := r.Put(ctx, active(app, corpA), permA, 0)
	require.NoError(t, err)
	c, err := r.Get(ctx, app, corpA)
	require.NoError(t, err)
	code, err := r.PermanentCode(c)
	require.NoError(t, err)
	g := corps.Grant{CorpID: corpA, PermanentCode: code}
	s := corps.Seed{CorpID: corpA, PermanentCode: code}
	for _, v := range []any{c, &c, code, g, s, []corps.Seed{s}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			assert.NotContains(t, fmt.Sprintf(verb, v), permA, verb)
		}
	}
}

func TestRegistry_Put(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	rev, err := r.Put(ctx, active(app, corpA), permA, 0)
	require.NoError(t, err)

	t.Run("ErrConflictCreateExisting", func(t *testing.T) {
		_, err := r.Put(ctx, active(app, corpA), permB, 0)
		require.ErrorIs(t, err, corps.ErrConflict)
	})
	t.Run("ErrConflictOldRevision", func(t *testing.T) {
		next, err := r.Put(ctx, active(app, corpA), permB, rev)
		require.NoError(t, err)
		_, err = r.Put(ctx, active(app, corpA), permA, rev)
		require.ErrorIs(t, err, corps.ErrConflict)
		c, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		assert.Equal(t, next, c.Revision)
		code, err := r.PermanentCode(c)
		require.NoError(t, err)
		assert.Equal(t, permB, code.Reveal(), "the losing write changed nothing")
	})
	for name, c := range map[string]corps.Corp{
		"ErrNoApp":          {CorpID: corpB, State: corps.Active},
		"ErrNoCorp":         {App: app, State: corps.Active},
		"ErrBadState":       {App: app, CorpID: corpB, State: "paused"},
		"ErrActiveWithout ": {App: app, CorpID: corpB, State: corps.Active},
	} {
		t.Run(name, func(t *testing.T) {
			code := config.Secret(permB)
			if name == "ErrActiveWithout " {
				code = ""
			}
			_, err := r.Put(ctx, c, code, 0)
			require.ErrorIs(t, err, corps.ErrInvalid)
			_, err = r.Get(ctx, app, corpB)
			require.ErrorIs(t, err, corps.ErrNotFound, "nothing written")
		})
	}
}

func TestRegistry_KeyEscaping(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	odd := []string{"corp.with.dots", "corp with space", "corp=eq", "企业"}
	for _, id := range odd {
		_, err := r.Put(ctx, active("app.x", id), "c", 0)
		require.NoError(t, err, id)
	}
	list, err := r.List(ctx, "app.x")
	require.NoError(t, err)
	var ids []string
	for _, c := range list {
		ids = append(ids, c.CorpID)
	}
	assert.ElementsMatch(t, odd, ids)

	var deleted []string
	var mu sync.Mutex
	w, err := r.Watch(ctx, "app.x", func(ch corps.Change) {
		if ch.Deleted {
			mu.Lock()
			deleted = append(deleted, ch.Corp.App+"/"+ch.Corp.CorpID)
			mu.Unlock()
		}
	})
	require.NoError(t, err)
	defer w.Stop()
	require.NoError(t, r.Delete(ctx, "app.x", "corp.with.dots"))
	natstest.WaitFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(deleted) == 0 {
			return errors.New("no deletion seen")
		}
		return nil
	})
	mu.Lock()
	assert.Equal(t, []string{"app.x/corp.with.dots"}, deleted, "the key decodes back to the exact ids")
	mu.Unlock()
}

func TestRegistry_Seed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	seeds := []corps.Seed{{CorpID: corpA, PermanentCode: permA}, {CorpID: corpB, PermanentCode: permB}}

	rep, err := r.Seed(ctx, app, seeds)
	require.NoError(t, err)
	assert.Equal(t, []string{corpA, corpB}, rep.Created)
	before, err := r.Get(ctx, app, corpA)
	require.NoError(t, err)
	assert.Equal(t, corps.SourceConfig, before.Source)
	assert.Equal(t, corps.Active, before.State)

	t.Run("Idempotent", func(t *testing.T) {
		rep, err := e.open(t, keyring(t, "k1", "k1")).Seed(ctx, app, seeds)
		require.NoError(t, err)
		assert.Equal(t, []string{corpA, corpB}, rep.Unchanged)
		after, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		assert.Equal(t, before.Revision, after.Revision, "nothing written")
	})
	t.Run("ConfigEditReplacesConfigCode", func(t *testing.T) {
		rep, err := r.Seed(ctx, app, []corps.Seed{{CorpID: corpA, PermanentCode: "edited"}})
		require.NoError(t, err)
		assert.Equal(t, []string{corpA}, rep.Updated)
		c, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		code, err := r.PermanentCode(c)
		require.NoError(t, err)
		assert.Equal(t, "edited", code.Reveal())
	})
	t.Run("CreateAuthWins", func(t *testing.T) {
		out, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "code-b", Cause: corps.CauseCreateAuth,
			Exchange: func(context.Context) (corps.Grant, error) {
				return corps.Grant{CorpID: corpB, CorpName: "B Ltd", PermanentCode: "from-wecom"}, nil
			}})
		require.NoError(t, err)
		rep, err := r.Seed(ctx, app, seeds)
		require.NoError(t, err)
		assert.Equal(t, []string{corpB}, rep.Kept)
		c, err := r.Get(ctx, app, corpB)
		require.NoError(t, err)
		assert.Equal(t, out.Corp.Revision, c.Revision)
		code, err := r.PermanentCode(c)
		require.NoError(t, err)
		assert.Equal(t, "from-wecom", code.Reveal(), "an older config value never overwrites an exchange")
	})
	t.Run("CancelledStaysCancelled", func(t *testing.T) {
		_, err := r.Cancel(ctx, app, corpA, time.Time{}, corps.CauseOperator)
		require.NoError(t, err)
		rep, err := r.Seed(ctx, app, seeds)
		require.NoError(t, err)
		assert.Equal(t, []string{corpA}, rep.Cancelled)
		c, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		assert.Equal(t, corps.Cancelled, c.State)
	})
	for name, bad := range map[string][]corps.Seed{
		"ErrEmptyCorp": {{CorpID: "wwNew1", PermanentCode: "x"}, {PermanentCode: "x"}},
		"ErrEmptyCode": {{CorpID: "wwNew1", PermanentCode: "x"}, {CorpID: "wwNew2"}},
		"ErrDuplicate": {{CorpID: "wwNew1", PermanentCode: "x"}, {CorpID: "wwNew1", PermanentCode: "y"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := r.Seed(ctx, app, bad)
			require.ErrorIs(t, err, corps.ErrInvalid)
			_, err = r.Get(ctx, app, "wwNew1")
			require.ErrorIs(t, err, corps.ErrNotFound, "nothing written")
		})
	}
}

// exchanger counts exchanges and answers a fixed grant.
type exchanger struct {
	calls atomic.Int32
	grant corps.Grant
	err   error
	// gate, when set, holds each exchange until closed.
	gate chan struct{}
}

func (x *exchanger) exchange(ctx context.Context) (corps.Grant, error) {
	x.calls.Add(1)
	if x.gate != nil {
		select {
		case <-x.gate:
		case <-ctx.Done():
			return corps.Grant{}, ctx.Err()
		}
	}
	return x.grant, x.err
}

func TestRegistry_Authorize(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1717000000, 0).UTC()

	t.Run("ThreeDeliveriesOneExchange", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, keyring(t, "k1", "k1"))
		x := &exchanger{grant: corps.Grant{CorpID: corpA, CorpName: "Acme", PermanentCode: permA}}
		a := corps.Authorization{App: app, AuthCode: authCode, Cause: corps.CauseCreateAuth, EventTime: t0, Exchange: x.exchange}
		out, err := r.Authorize(ctx, a)
		require.NoError(t, err)
		assert.False(t, out.Replayed)
		assert.Equal(t, corps.Active, out.Corp.State)
		assert.Equal(t, corps.SourceCreateAuth, out.Corp.Source)
		assert.Equal(t, "Acme", out.Corp.CorpName)
		assert.Equal(t, t0, out.Corp.EventAt)
		for range 2 {
			again, err := e.open(t, keyring(t, "k1", "k1")).Authorize(ctx, a)
			require.NoError(t, err)
			assert.True(t, again.Replayed)
		}
		assert.Equal(t, int32(1), x.calls.Load(), "one exchange")
		list, err := r.List(ctx, app)
		require.NoError(t, err)
		require.Len(t, list, 1, "one registry entry")
		assert.Equal(t, out.Corp.Revision, list[0].Revision, "a replay writes nothing")
		code, err := r.PermanentCode(list[0])
		require.NoError(t, err)
		assert.Equal(t, permA, code.Reveal())
	})

	t.Run("ConcurrentReplicasOneExchange", func(t *testing.T) {
		e := newEnv(t)
		x := &exchanger{grant: corps.Grant{CorpID: corpA, PermanentCode: permA}, gate: make(chan struct{})}
		a := corps.Authorization{App: app, AuthCode: authCode, Cause: corps.CauseCreateAuth, Exchange: x.exchange}
		regs := []*corps.Registry{e.open(t, keyring(t, "k1", "k1")), e.open(t, keyring(t, "k1", "k1")), e.open(t, keyring(t, "k1", "k1"))}
		var (
			mu   sync.Mutex
			errs = make([]error, len(regs))
			outs = make([]corps.Outcome, len(regs))
			wg   sync.WaitGroup
		)
		for i, r := range regs {
			wg.Go(func() {
				out, err := r.Authorize(ctx, a)
				mu.Lock()
				outs[i], errs[i] = out, err
				mu.Unlock()
			})
		}
		natstest.WaitFor(t, 5*time.Second, func() error {
			if x.calls.Load() == 0 {
				return errors.New("no exchange yet")
			}
			return nil
		})
		// The others find the claim and back off while the exchange runs.
		natstest.WaitFor(t, 5*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, err := range errs {
				if errors.Is(err, corps.ErrInProgress) {
					n++
				}
			}
			if n < 2 {
				return fmt.Errorf("%d replicas saw the claim", n)
			}
			return nil
		})
		close(x.gate)
		wg.Wait()
		assert.Equal(t, int32(1), x.calls.Load())
		won := 0
		for i := range regs {
			if errs[i] == nil && !outs[i].Replayed {
				won++
			}
		}
		assert.Equal(t, 1, won)
		out, err := regs[1].Authorize(ctx, a)
		require.NoError(t, err)
		assert.True(t, out.Replayed, "after the exchange, a retry is a replay")
	})

	t.Run("FailedExchangeReleasesClaim", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, keyring(t, "k1", "k1"))
		x := &exchanger{err: errors.New("wecom get_permanent_code: errcode -1")}
		a := corps.Authorization{App: app, AuthCode: authCode, Cause: corps.CauseCreateAuth, Exchange: x.exchange}
		_, err := r.Authorize(ctx, a)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), authCode)
		x.err, x.grant = nil, corps.Grant{CorpID: corpA, PermanentCode: permA}
		out, err := r.Authorize(ctx, a)
		require.NoError(t, err)
		assert.False(t, out.Replayed)
		assert.Equal(t, int32(2), x.calls.Load())
	})

	t.Run("GrantKeptWhenStoringFails", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, keyring(t, "k1", "k1"))
		js := e.js(t)
		raw, err := js.KeyValue(ctx, corps.Bucket)
		require.NoError(t, err)
		// An entry that does not decode makes storing the grant fail
		// after the code was spent.
		_, err = raw.Put(ctx, app+"."+corpA, []byte("not json"))
		require.NoError(t, err)
		x := &exchanger{grant: corps.Grant{CorpID: corpA, CorpName: "Acme", PermanentCode: permA}}
		a := corps.Authorization{App: app, AuthCode: authCode, Cause: corps.CauseCreateAuth, Exchange: x.exchange}
		_, err = r.Authorize(ctx, a)
		require.Error(t, err)

		codes, err := js.KeyValue(ctx, corps.CodeBucket)
		require.NoError(t, err)
		keys, err := codes.Keys(ctx)
		require.NoError(t, err)
		require.Len(t, keys, 1)
		rec, err := codes.Get(ctx, keys[0])
		require.NoError(t, err)
		assert.Contains(t, string(rec.Value()), `"state":"exchanged"`)
		assert.NotContains(t, string(rec.Value()), permA, "the kept code is sealed")
		assert.NotContains(t, keys[0], authCode, "the record is keyed by a digest")

		require.NoError(t, raw.Purge(ctx, app+"."+corpA))
		out, err := r.Authorize(ctx, a)
		require.NoError(t, err)
		assert.Equal(t, int32(1), x.calls.Load(), "the retry stores the kept grant without exchanging again")
		code, err := r.PermanentCode(out.Corp)
		require.NoError(t, err)
		assert.Equal(t, permA, code.Reveal())
		rec, err = codes.Get(ctx, keys[0])
		require.NoError(t, err)
		assert.JSONEq(t, `{"state":"done","at":"`+mustTime(t, rec.Value())+`"}`, string(rec.Value()), "done drops the kept grant")
		again, err := r.Authorize(ctx, a)
		require.NoError(t, err)
		assert.True(t, again.Replayed)
	})

	t.Run("ClaimTimesOut", func(t *testing.T) {
		e := newEnv(t)
		now := time.Now()
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		r := e.open(t, keyring(t, "k1", "k1"), corps.WithClock(clock), corps.WithClaimTimeout(time.Minute))
		x := &exchanger{grant: corps.Grant{CorpID: corpA, PermanentCode: permA}, gate: make(chan struct{})}
		a := corps.Authorization{App: app, AuthCode: authCode, Cause: corps.CauseCreateAuth, Exchange: x.exchange}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { _, err := r.Authorize(cctx, a); done <- err }()
		natstest.WaitFor(t, 5*time.Second, func() error {
			if x.calls.Load() == 0 {
				return errors.New("no exchange yet")
			}
			return nil
		})
		_, err := r.Authorize(ctx, a)
		require.ErrorIs(t, err, corps.ErrInProgress)
		// The first replica hangs past the claim timeout: another takes
		// over (its exchange would fail at WeCom if the code was spent).
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		x2 := &exchanger{grant: x.grant}
		a2 := a
		a2.Exchange = x2.exchange
		out, err := r.Authorize(ctx, a2)
		require.NoError(t, err)
		assert.False(t, out.Replayed)
		assert.Equal(t, int32(1), x2.calls.Load(), "the timed-out claim was taken over")
		close(x.gate)
		<-done // the first finishes too; both wrote the same grant
		cancel()
		out, err = r.Authorize(ctx, a)
		require.NoError(t, err)
		assert.True(t, out.Replayed)
	})

	t.Run("ResetReplacesCode", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, keyring(t, "k1", "k1"))
		_, err := r.Seed(ctx, app, []corps.Seed{{CorpID: corpA, PermanentCode: permA}})
		require.NoError(t, err)
		seeded, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		x := &exchanger{grant: corps.Grant{CorpID: corpA, CorpName: "Acme", PermanentCode: permB}}
		out, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "reset-1", Cause: corps.CauseReset,
			CorpID: corpA, EventTime: t0, Exchange: x.exchange})
		require.NoError(t, err)
		assert.Equal(t, corps.SourceReset, out.Corp.Source)
		assert.Equal(t, seeded.AuthorizedAt, out.Corp.AuthorizedAt, "a reset keeps when the corp was authorized")
		code, err := r.PermanentCode(out.Corp)
		require.NoError(t, err)
		assert.Equal(t, permB, code.Reveal())
		rep, err := r.Seed(ctx, app, []corps.Seed{{CorpID: corpA, PermanentCode: permA}})
		require.NoError(t, err)
		assert.Equal(t, []string{corpA}, rep.Kept, "after a reset the file's code is old")
	})

	t.Run("ErrCorpMismatch", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, keyring(t, "k1", "k1"))
		x := &exchanger{grant: corps.Grant{CorpID: corpB, PermanentCode: permB}}
		_, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "reset-2", Cause: corps.CauseReset,
			CorpID: corpA, Exchange: x.exchange})
		require.ErrorIs(t, err, corps.ErrCorpMismatch)
		assert.NotContains(t, err.Error(), permB)
		list, err := r.List(ctx, "")
		require.NoError(t, err)
		assert.Empty(t, list)
	})

	t.Run("StaleAfterCancel", func(t *testing.T) {
		e := newEnv(t)
		r := e.open(t, keyring(t, "k1", "k1"))
		x := &exchanger{grant: corps.Grant{CorpID: corpA, PermanentCode: permA}}
		_, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "c1", Cause: corps.CauseCreateAuth, EventTime: t0, Exchange: x.exchange})
		require.NoError(t, err)
		_, err = r.Cancel(ctx, app, corpA, t0.Add(time.Minute), corps.CauseCancelAuth)
		require.NoError(t, err)
		// A create_auth older than the cancel arrives late.
		out, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "c0", Cause: corps.CauseCreateAuth, EventTime: t0.Add(30 * time.Second), Exchange: x.exchange})
		require.NoError(t, err)
		assert.True(t, out.Stale)
		c, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		assert.Equal(t, corps.Cancelled, c.State)
		assert.Nil(t, c.Code)
		// A newer one re-authorizes.
		out, err = r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "c2", Cause: corps.CauseCreateAuth, EventTime: t0.Add(2 * time.Minute), Exchange: x.exchange})
		require.NoError(t, err)
		assert.Equal(t, corps.Active, out.Corp.State)
	})

	for name, a := range map[string]corps.Authorization{
		"ErrNoApp":        {AuthCode: "x", Cause: corps.CauseCreateAuth},
		"ErrNoCode":       {App: app, Cause: corps.CauseCreateAuth},
		"ErrLongCode":     {App: app, AuthCode: string(make([]byte, 513)), Cause: corps.CauseCreateAuth},
		"ErrBadCause":     {App: app, AuthCode: "x", Cause: corps.CauseCancelAuth},
		"ErrResetNoCorp":  {App: app, AuthCode: "x", Cause: corps.CauseReset},
		"ErrNoExchangeFn": {App: app, AuthCode: "x", Cause: corps.CauseCreateAuth},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			r := e.open(t, keyring(t, "k1", "k1"))
			x := &exchanger{grant: corps.Grant{CorpID: corpA, PermanentCode: permA}}
			if name != "ErrNoExchangeFn" {
				a.Exchange = x.exchange
			}
			_, err := r.Authorize(ctx, a)
			require.ErrorIs(t, err, corps.ErrInvalid)
			assert.Zero(t, x.calls.Load(), "no exchange")
		})
	}
}

func TestRegistry_CancelAndDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	t0 := time.Unix(1717000000, 0).UTC()
	x := &exchanger{grant: corps.Grant{CorpID: corpA, CorpName: "Acme", PermanentCode: permA}}
	_, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "c1", Cause: corps.CauseCreateAuth, EventTime: t0, Exchange: x.exchange})
	require.NoError(t, err)

	_, err = r.Cancel(ctx, app, corpA, t0.Add(-time.Second), corps.CauseCancelAuth)
	require.ErrorIs(t, err, corps.ErrStale, "a cancel older than the authorization")

	c, err := r.Cancel(ctx, app, corpA, t0.Add(time.Second), corps.CauseCancelAuth)
	require.NoError(t, err)
	assert.Equal(t, corps.Cancelled, c.State)
	assert.Nil(t, c.Code)
	assert.Empty(t, c.CorpName)
	got, err := r.Get(ctx, app, corpA)
	require.NoError(t, err)
	_, err = r.PermanentCode(got)
	require.ErrorIs(t, err, corps.ErrNotFound)

	again, err := r.Cancel(ctx, app, corpA, t0.Add(time.Second), corps.CauseCancelAuth)
	require.NoError(t, err)
	assert.Equal(t, got.Revision, again.Revision, "cancelling twice writes nothing")

	_, err = r.Cancel(ctx, app, corpB, time.Time{}, corps.CauseOperator)
	require.ErrorIs(t, err, corps.ErrNotFound)

	require.NoError(t, r.Delete(ctx, app, corpA))
	require.NoError(t, r.Delete(ctx, app, corpA), "idempotent")
	_, err = r.Get(ctx, app, corpA)
	require.ErrorIs(t, err, corps.ErrNotFound)
	st, err := e.js(t).Stream(ctx, "KV_"+corps.Bucket)
	require.NoError(t, err)
	msg, err := st.GetLastMsgForSubject(ctx, "$KV."+corps.Bucket+"."+app+"."+corpA)
	require.NoError(t, err)
	assert.Equal(t, "PURGE", msg.Header.Get("KV-Operation"))
	assert.Empty(t, msg.Data, "a purge keeps no revision, only an empty marker")
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Msgs, "the marker is all that is left")
}

func TestRegistry_Watch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	writer := e.open(t, keyring(t, "k1", "k1"))
	_, err := writer.Put(ctx, active(app, corpA), permA, 0)
	require.NoError(t, err)
	_, err = writer.Put(ctx, active("other", corpA), permA, 0)
	require.NoError(t, err)

	var (
		mu  sync.Mutex
		got []corps.Change
	)
	replica := e.open(t, nil) // a replica that only follows
	w, err := replica.Watch(ctx, app, func(ch corps.Change) {
		mu.Lock()
		got = append(got, ch)
		mu.Unlock()
	})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	snapshot := func() []corps.Change {
		mu.Lock()
		defer mu.Unlock()
		return append([]corps.Change(nil), got...)
	}
	initial := snapshot()
	require.Len(t, initial, 1, "the current state is delivered before Watch returns, of app only")
	assert.True(t, initial[0].Initial)
	assert.Equal(t, corpA, initial[0].Corp.CorpID)

	_, err = writer.Put(ctx, active(app, corpB), permB, 0)
	require.NoError(t, err)
	_, err = writer.Cancel(ctx, app, corpA, time.Time{}, corps.CauseOperator)
	require.NoError(t, err)
	require.NoError(t, writer.Delete(ctx, app, corpA))
	natstest.WaitFor(t, 5*time.Second, func() error {
		if all := snapshot(); len(all) == 0 || !all[len(all)-1].Deleted {
			return fmt.Errorf("%d changes, the deletion not yet", len(all))
		}
		return nil
	})
	all := snapshot()
	assert.Equal(t, corpB, all[1].Corp.CorpID)
	assert.False(t, all[1].Initial)
	// The bucket keeps one revision of a key, so a watcher that is behind
	// (a loaded CI machine once was) finds the cancellation already
	// replaced by the deletion: it sees the latest state, not every step.
	// A consumer of Watch acts on the latest change of a corp for that
	// reason (app's corpQueue).
	switch len(all) {
	case 4:
		assert.Equal(t, corps.Cancelled, all[2].Corp.State)
	case 3:
	default:
		t.Fatalf("%d changes: %+v", len(all), all)
	}
	last := all[len(all)-1]
	assert.True(t, last.Deleted)
	assert.Equal(t, corps.Corp{App: app, CorpID: corpA, Revision: last.Corp.Revision}, last.Corp)

	w.Stop()
	assert.ErrorIs(t, w.Err(), context.Canceled)
	_, err = writer.Put(ctx, active(app, "wwCorpC"), permB, 0)
	require.NoError(t, err)
	assert.Len(t, snapshot(), len(all), "nothing after Stop")
}

// seed10000 fills a registry with 10,000 corps of app.
func seed10000(b *testing.B) (*env, *corps.Registry, []corps.Seed) {
	e := newEnv(b)
	r := e.open(b, keyring(b, "k1", "k1"))
	seeds := make([]corps.Seed, 10000)
	for i := range seeds {
		seeds[i] = corps.Seed{CorpID: fmt.Sprintf("wwCorp%05d", i), PermanentCode: config.Secret(fmt.Sprintf("code-%05d", i))}
	}
	_, err := r.Seed(context.Background(), app, seeds)
	require.NoError(b, err)
	return e, r, seeds
}

// BenchmarkRegistry_SeedUnchanged is a replica's start with 10,000 corps in
// the file and the registry already seeded: one list, nothing written.
func BenchmarkRegistry_SeedUnchanged(b *testing.B) {
	_, r, seeds := seed10000(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := r.Seed(ctx, app, seeds)
		if err != nil || len(rep.Unchanged) != len(seeds) {
			b.Fatalf("seed: %d unchanged, %v", len(rep.Unchanged), err)
		}
	}
}

// BenchmarkRegistry_Mirror10000 is loading a replica's mirror of 10,000
// corps.
func BenchmarkRegistry_Mirror10000(b *testing.B) {
	_, r, seeds := seed10000(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := r.Mirror(ctx, app, nil)
		if err != nil || len(m.Active(app)) != len(seeds) {
			b.Fatalf("mirror: %v", err)
		}
		m.Stop()
	}
}

// BenchmarkRegistry_List measures listing 10,000 entries of one app (plus
// 1,000 of another, filtered out) through one KV watch.
func BenchmarkRegistry_List(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	r := e.open(b, keyring(b, "k1", "k1"))
	const n = 10000
	seeds := make([]corps.Seed, n)
	for i := range seeds {
		seeds[i] = corps.Seed{CorpID: fmt.Sprintf("wwCorp%05d", i), PermanentCode: config.Secret(fmt.Sprintf("code-%05d", i))}
	}
	_, err := r.Seed(ctx, app, seeds)
	require.NoError(b, err)
	_, err = r.Seed(ctx, "other", seeds[:1000])
	require.NoError(b, err)
	st, err := e.js(b).Stream(ctx, "KV_"+corps.Bucket)
	require.NoError(b, err)
	info, err := st.Info(ctx)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		list, err := r.List(ctx, app)
		if err != nil || len(list) != n {
			b.Fatalf("list: %d entries, %v", len(list), err)
		}
	}
	b.ReportMetric(float64(info.State.Bytes)/float64(info.State.Msgs), "stored-bytes/entry")
}

// TestMirror: two replicas' mirrors follow one registry: a corp authorized
// on one is served by both, a cancelled one by neither.
func TestMirror(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := keyring(t, "k1", "k1")
	writer := e.open(t, k)
	_, err := writer.Seed(ctx, app, []corps.Seed{{CorpID: corpA, PermanentCode: permA}})
	require.NoError(t, err)

	var mirrors []*corps.Mirror
	var mu sync.Mutex
	seen := map[string]int{}
	for range 2 {
		m, err := e.open(t, k).Mirror(ctx, app, func(ch corps.Change) {
			mu.Lock()
			seen[ch.Corp.CorpID]++
			mu.Unlock()
		})
		require.NoError(t, err)
		t.Cleanup(m.Stop)
		mirrors = append(mirrors, m)
		assert.Equal(t, []string{corpA}, m.Active(app), "loaded before Mirror returns")
	}

	x := &exchanger{grant: corps.Grant{CorpID: corpB, PermanentCode: permB}}
	_, err = writer.Authorize(ctx, corps.Authorization{App: app, AuthCode: authCode, Cause: corps.CauseCreateAuth, Exchange: x.exchange})
	require.NoError(t, err)
	for _, m := range mirrors {
		natstest.WaitFor(t, 5*time.Second, func() error {
			if got := m.Active(app); len(got) != 2 {
				return fmt.Errorf("active %v", got)
			}
			return nil
		})
		code, err := m.PermanentCode(ctx, app, corpB)
		require.NoError(t, err)
		assert.Equal(t, permB, code.Reveal())
	}

	_, err = writer.Cancel(ctx, app, corpA, time.Time{}, corps.CauseCancelAuth)
	require.NoError(t, err)
	for _, m := range mirrors {
		natstest.WaitFor(t, 5*time.Second, func() error {
			if got := m.Active(app); len(got) != 1 {
				return fmt.Errorf("active %v", got)
			}
			return nil
		})
		assert.Equal(t, []string{corpB}, m.Active(app))
		_, err := m.PermanentCode(ctx, app, corpA)
		require.ErrorIs(t, err, corps.ErrNotFound)
		c, ok := m.Get(app, corpA)
		require.True(t, ok)
		assert.Equal(t, corps.Cancelled, c.State)
	}
	require.NoError(t, writer.Delete(ctx, app, corpA))
	for _, m := range mirrors {
		natstest.WaitFor(t, 5*time.Second, func() error {
			if _, ok := m.Get(app, corpA); ok {
				return errors.New("still there")
			}
			return nil
		})
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{corpA: 2 * 3, corpB: 2}, seen, "onChange sees every change on every replica")
}

func TestRegistry_Update(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	rev, err := r.Put(ctx, active(app, corpA), permA, 0)
	require.NoError(t, err)
	t0 := time.Unix(1717000000, 0).UTC()

	c, err := r.Update(ctx, app, corpA, corps.CauseChangeAuth, func(c *corps.Corp) error {
		c.CorpName, c.EventAt = "Renamed", t0
		c.CorpID = "ignored" // the key's ids win
		return nil
	})
	require.NoError(t, err)
	assert.Greater(t, c.Revision, rev)
	got, err := r.Get(ctx, app, corpA)
	require.NoError(t, err)
	assert.Equal(t, "Renamed", got.CorpName)
	assert.Equal(t, corpA, got.CorpID)
	assert.Equal(t, corps.CauseChangeAuth, got.LastChange)
	code, err := r.PermanentCode(got)
	require.NoError(t, err)
	assert.Equal(t, permA, code.Reveal(), "the code is kept")

	t.Run("ErrFromMutateWritesNothing", func(t *testing.T) {
		_, err := r.Update(ctx, app, corpA, corps.CauseChangeAuth, func(c *corps.Corp) error {
			c.CorpName = "not stored"
			return corps.ErrStale
		})
		require.ErrorIs(t, err, corps.ErrStale)
		after, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		assert.Equal(t, got.Revision, after.Revision)
	})
	t.Run("RetriesOnConflict", func(t *testing.T) {
		tries := 0
		_, err := r.Update(ctx, app, corpA, corps.CauseChangeAuth, func(c *corps.Corp) error {
			tries++
			if tries == 1 {
				// Another replica writes between this read and its write.
				_, err := e.open(t, keyring(t, "k1", "k1")).Put(ctx, *c, permB, c.Revision)
				require.NoError(t, err)
			}
			c.CorpName = "second try"
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, 2, tries)
		after, err := r.Get(ctx, app, corpA)
		require.NoError(t, err)
		assert.Equal(t, "second try", after.CorpName)
		code, err := r.PermanentCode(after)
		require.NoError(t, err)
		assert.Equal(t, permB, code.Reveal(), "the other replica's code survives")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := r.Update(ctx, app, corpB, corps.CauseChangeAuth, func(*corps.Corp) error { return nil })
		require.ErrorIs(t, err, corps.ErrNotFound)
	})
}

// mustTime returns the "at" of a code record.
func mustTime(t *testing.T, rec []byte) string {
	t.Helper()
	var r struct {
		At string `json:"at"`
	}
	require.NoError(t, json.Unmarshal(rec, &r))
	return r.At
}

// TestRegistry_CancelUnknown: WeCom's cancellation of a corp the registry
// has no entry for yet (its create_auth still being exchanged, or failed
// and to be retried) leaves a cancelled entry, so that the older
// create_auth, applied after it, is stale instead of serving a corp that
// has cancelled. An operator's cancel of an unknown corp stays ErrNotFound.
func TestRegistry_CancelUnknown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.open(t, keyring(t, "k1", "k1"))
	t0 := time.Unix(1717000000, 0).UTC()

	_, err := r.Cancel(ctx, app, corpB, time.Time{}, corps.CauseOperator)
	require.ErrorIs(t, err, corps.ErrNotFound)

	c, err := r.Cancel(ctx, app, corpA, t0.Add(time.Second), corps.CauseCancelAuth)
	require.NoError(t, err)
	assert.Equal(t, corps.Cancelled, c.State)
	assert.Equal(t, t0.Add(time.Second), c.EventAt)
	again, err := r.Cancel(ctx, app, corpA, t0.Add(time.Second), corps.CauseCancelAuth)
	require.NoError(t, err, "a redelivered cancel_auth")
	assert.Equal(t, c.Revision, again.Revision, "writes nothing the second time")

	x := &exchanger{grant: corps.Grant{CorpID: corpA, CorpName: "Acme", PermanentCode: permA}}
	out, err := r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "late", Cause: corps.CauseCreateAuth, EventTime: t0, Exchange: x.exchange})
	require.NoError(t, err)
	assert.True(t, out.Stale, "the create_auth that came before the cancel is not applied")
	got, err := r.Get(ctx, app, corpA)
	require.NoError(t, err)
	assert.Equal(t, corps.Cancelled, got.State)
	assert.Nil(t, got.Code, "no permanent code kept for a cancelled corp")

	out, err = r.Authorize(ctx, corps.Authorization{App: app, AuthCode: "newer", Cause: corps.CauseCreateAuth, EventTime: t0.Add(time.Minute), Exchange: x.exchange})
	require.NoError(t, err)
	assert.Equal(t, corps.Active, out.Corp.State, "a later installation is served")
}
