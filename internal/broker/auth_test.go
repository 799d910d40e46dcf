package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// seedOption logs in with the nkey seed in file.
func seedOption(t testing.TB, file string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(file)
	require.NoError(t, err)
	return o
}

// dial connects to url with opts and no retries; the error is the login's.
func dial(url string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())...)
}

// openListening starts an embedded server on 127.0.0.1:0 with roles whose
// seeds live in creds.
func openListening(t *testing.T, store, creds string, roles ...broker.Role) *broker.Broker {
	t.Helper()
	log, _ := testLogger()
	return mustOpen(t, broker.Options{StoreDir: store, Listen: "127.0.0.1:0", CredentialsDir: creds, Roles: roles}, log)
}

func publicKey(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	kp, err := nkeys.ParseDecoratedNKey(data)
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	return pub
}

// TestOpen_ListenAuth: a listening embedded server lets in only the roles'
// keys, enforces their permissions, and keeps their seeds private and
// stable across restarts; the broker itself still works in-process.
func TestOpen_ListenAuth(t *testing.T) {
	store, creds := t.TempDir(), filepath.Join(t.TempDir(), "creds")
	reader := broker.Role{Name: "reader", Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"public.>", "_INBOX.>"}},
	}}
	b := openListening(t, store, creds, reader, broker.Role{Name: "admin"})
	u := b.ClientURL()
	roundTrip(t, b.JetStream()) // the receiver's own connection has every right

	t.Run("ErrNoCredentials", func(t *testing.T) {
		nc, err := dial(u)
		if nc != nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})

	t.Run("ErrUnknownKey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		nc, err := dial(u, nats.Nkey(pub, kp.Sign))
		if nc != nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})

	t.Run("SeedFiles", func(t *testing.T) {
		st, err := os.Stat(creds)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
		for _, role := range []string{"reader", "admin"} {
			st, err := os.Stat(broker.SeedFile(creds, role))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), role)
		}
		entries, err := os.ReadDir(creds)
		require.NoError(t, err)
		assert.Len(t, entries, 2, "no temporary files left behind")
		assert.NotEqual(t, publicKey(t, broker.SeedFile(creds, "reader")), publicKey(t, broker.SeedFile(creds, "admin")))
	})

	t.Run("Permissions", func(t *testing.T) {
		errs := make(chan error, 4)
		nc, err := dial(u, seedOption(t, broker.SeedFile(creds, "reader")),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
		require.NoError(t, err)
		defer nc.Close()

		sub, err := nc.SubscribeSync("public.news")
		require.NoError(t, err)
		require.NoError(t, nc.Flush())
		require.NoError(t, b.Conn().Publish("public.news", []byte("hi")))
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, "hi", string(msg.Data))

		_, err = nc.SubscribeSync("private.x")
		require.NoError(t, err) // refused asynchronously
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, nats.ErrPermissionViolation)
			assert.Contains(t, err.Error(), "private.x")
		case <-time.After(5 * time.Second):
			t.Fatal("subscribing outside the role's permissions was not refused")
		}
	})

	t.Run("SeedsReusedAfterRestart", func(t *testing.T) {
		before := publicKey(t, broker.SeedFile(creds, "admin"))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.Close(ctx))

		b2 := openListening(t, store, creds, reader, broker.Role{Name: "admin"})
		assert.Equal(t, before, publicKey(t, broker.SeedFile(creds, "admin")))
		nc, err := dial(b2.ClientURL(), seedOption(t, broker.SeedFile(creds, "admin")))
		require.NoError(t, err, "a seed handed out before the restart still logs in")
		nc.Close()

		// And over Open's external path, as the operator commands connect.
		log, _ := testLogger()
		ext := mustOpen(t, broker.Options{URLs: []string{b2.ClientURL()}, CredentialsFile: broker.SeedFile(creds, "admin"),
			InboxPrefix: "_INBOX_ADMIN"}, log)
		roundTrip(t, ext.JetStream())
		assert.True(t, strings.HasPrefix(ext.Conn().NewRespInbox(), "_INBOX_ADMIN."))
	})
}

func TestOpen_ListenAuthErrors(t *testing.T) {
	log, _ := testLogger()
	open := func(opts broker.Options) error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := broker.Open(ctx, opts, log)
		if err == nil {
			_ = b.Close(ctx)
		}
		return err
	}

	t.Run("ErrNoCredentialsDir", func(t *testing.T) {
		err := open(broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
		require.ErrorIs(t, err, broker.ErrInvalidOption)
		assert.Contains(t, err.Error(), "credentials dir")
	})

	t.Run("ErrRoleName", func(t *testing.T) {
		creds := t.TempDir()
		err := open(broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", CredentialsDir: creds,
			Roles: []broker.Role{{Name: "../x"}}})
		require.ErrorIs(t, err, broker.ErrInvalidOption)
		entries, _ := os.ReadDir(creds)
		assert.Empty(t, entries)
	})

	t.Run("ErrSeedReadableByOthers", func(t *testing.T) {
		creds := t.TempDir()
		b := openListening(t, t.TempDir(), creds, broker.Role{Name: "consumer"})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.Close(ctx))
		file := broker.SeedFile(creds, "consumer")
		require.NoError(t, os.Chmod(file, 0o644))
		err := open(broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", CredentialsDir: creds,
			Roles: []broker.Role{{Name: "consumer"}}})
		require.ErrorIs(t, err, broker.ErrCredentials)
		assert.Contains(t, err.Error(), "0644")
	})

	t.Run("ErrSeedGarbage", func(t *testing.T) {
		creds := t.TempDir()
		file := broker.SeedFile(creds, "consumer")
		require.NoError(t, os.WriteFile(file, []byte("not a seed\n"), 0o600))
		err := open(broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", CredentialsDir: creds,
			Roles: []broker.Role{{Name: "consumer"}}})
		require.ErrorIs(t, err, broker.ErrCredentials)
		data, rerr := os.ReadFile(file)
		require.NoError(t, rerr)
		assert.Equal(t, "not a seed\n", string(data), "a bad file is reported, not replaced")

		err = open(broker.Options{URLs: []string{"nats://127.0.0.1:9"}, CredentialsFile: file})
		require.ErrorIs(t, err, broker.ErrCredentials)
		assert.NotContains(t, err.Error(), "not a seed", "the file's content is not echoed")
	})
}

// TestAuthUsers_ReceiverKeyInProcessOnly: the key the receiver logs in with
// opens in-process connections only; over TCP the server refuses it.
func TestAuthUsers_ReceiverKeyInProcessOnly(t *testing.T) {
	users, self, err := broker.AuthUsers(t.TempDir(), nil, nil)
	require.NoError(t, err)
	require.Len(t, users, 1)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, Nkeys: users})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	pub, err := self.PublicKey()
	require.NoError(t, err)

	nc, err := dial(srv.ClientURL(), nats.Nkey(pub, self.Sign), nats.InProcessServer(srv))
	require.NoError(t, err)
	nc.Close()

	nc, err = dial(srv.ClientURL(), nats.Nkey(pub, self.Sign))
	if nc != nil {
		nc.Close()
	}
	require.ErrorIs(t, err, nats.ErrAuthorization)
}

// TestCreateSeed_KeepsExisting: a seed that appeared between the read that
// found none and the write (another receiver on the same credentials dir)
// is kept and its key returned; nothing is left behind.
func TestCreateSeed_KeepsExisting(t *testing.T) {
	dir := t.TempDir()
	path := broker.SeedFile(dir, "consumer")
	first, err := broker.CreateSeed(path)
	require.NoError(t, err)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	second, err := broker.CreateSeed(path)
	require.NoError(t, err)
	assert.Equal(t, first, second, "the existing key")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the file is unchanged")
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")
}

// guestAccount imports stream T's info and pull requests under the prefix
// G.API, and t.> as a stream.
func guestAccount() *broker.Account {
	return &broker.Account{
		Name: "GUESTS",
		Services: []broker.Service{
			{Subject: "$JS.API.STREAM.INFO.T", As: "G.API.STREAM.INFO.T"},
			{Subject: "$JS.API.CONSUMER.CREATE.T.>", As: "G.API.CONSUMER.CREATE.T.>"},
			{Subject: "$JS.API.CONSUMER.MSG.NEXT.T.*", As: "G.API.CONSUMER.MSG.NEXT.T.*", Streamed: true},
			{Subject: "$JS.ACK.T.>"},
		},
		Streams: []string{"t.>"},
	}
}

// TestOpen_RoleAccount: a role with an account of its own reaches what the
// account imports and nothing else, even with no permissions to limit it;
// the server's answers to its requests land in its own account, not in the
// receiver's streams; and the receiver's data, in the global account,
// outlives restarts with and without role accounts.
func TestOpen_RoleAccount(t *testing.T) {
	store, creds := t.TempDir(), filepath.Join(t.TempDir(), "creds")
	// Data written before roles had accounts.
	b0 := openListening(t, store, creds, broker.Role{Name: "guest"})
	roundTrip(t, b0.JetStream())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := b0.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "SECRET", Subjects: []string{"secret.>"}})
	require.NoError(t, err)
	require.NoError(t, b0.Close(ctx))

	guest := broker.Role{Name: "guest", Account: guestAccount()}
	b := openListening(t, store, creds, guest, broker.Role{Name: "admin"})
	js := b.JetStream()
	st, err := js.Stream(ctx, "T")
	require.NoError(t, err, "the receiver's streams are where they were")
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)

	nc, err := dial(b.ClientURL(), seedOption(t, broker.SeedFile(creds, "guest")))
	require.NoError(t, err)
	defer nc.Close()
	gjs, err := jetstream.NewWithAPIPrefix(nc, "G.API")
	require.NoError(t, err)

	t.Run("Imports", func(t *testing.T) {
		sub, err := nc.SubscribeSync("t.>")
		require.NoError(t, err)
		require.NoError(t, nc.Flush())
		_, err = js.Publish(ctx, "t.2", []byte("live"))
		require.NoError(t, err)
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, "live", string(msg.Data))

		gst, err := gjs.Stream(ctx, "T")
		require.NoError(t, err)
		cons, err := gst.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "g", AckPolicy: jetstream.AckExplicitPolicy})
		require.NoError(t, err)
		batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			require.NoError(t, m.DoubleAck(ctx))
			n++
		}
		require.NoError(t, batch.Error())
		assert.Equal(t, 2, n)
		ci, err := js.Consumer(ctx, "T", "g")
		require.NoError(t, err)
		cinfo, err := ci.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), cinfo.AckFloor.Stream, "acks reach the receiver's account")
	})

	t.Run("NothingElse", func(t *testing.T) {
		// The receiver's own API subjects and data are not there.
		// (The guest account has no JetStream; the server says so.)
		resp, err := nc.Request("$JS.API.STREAM.INFO.SECRET", nil, 2*time.Second)
		require.NoError(t, err)
		assert.Contains(t, string(resp.Data), "JetStream not enabled for account")
		_, err = nc.Request("G.API.STREAM.INFO.SECRET", nil, 2*time.Second)
		require.ErrorIs(t, err, nats.ErrNoResponders)
		sub, err := nc.SubscribeSync("secret.>")
		require.NoError(t, err)
		require.NoError(t, nc.Flush())
		_, err = js.Publish(ctx, "secret.x", []byte("s"))
		require.NoError(t, err)
		_, err = sub.NextMsg(500 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout, "a subject the account does not import")
		// What the guest publishes stays in its account.
		require.NoError(t, nc.Publish("secret.y", []byte("forged")))
		require.NoError(t, nc.Publish("t.forged", []byte("forged")))
		// Answers to its requests go to its own reply subjects, in its own
		// account, even when those name the receiver's streams.
		require.NoError(t, nc.PublishRequest("G.API.STREAM.INFO.T", "secret.reply", nil))
		_, err = gjs.Stream(ctx, "T") // answered after the one above
		require.NoError(t, err)
		sec, err := js.Stream(ctx, "SECRET")
		require.NoError(t, err)
		sinfo, err := sec.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), sinfo.State.Msgs, "only the receiver's own message")
		tinfo, err := st.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), tinfo.State.Msgs)
	})

	t.Run("Restart", func(t *testing.T) {
		require.NoError(t, b.Close(ctx))
		b2 := openListening(t, store, creds, guest)
		st, err := b2.JetStream().Stream(ctx, "SECRET")
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), info.State.Msgs)
	})
}

func TestOpen_RoleAccountErrors(t *testing.T) {
	for name, roles := range map[string][]broker.Role{
		"SystemAccount": {{Name: "a", Account: &broker.Account{Name: "$SYS"}}},
		"GlobalAccount": {{Name: "a", Account: &broker.Account{Name: "$G"}}},
		"BadName":       {{Name: "a", Account: &broker.Account{Name: "a b"}}},
		"Conflicting": {
			{Name: "a", Account: &broker.Account{Name: "X", Streams: []string{"x.>"}}},
			{Name: "b", Account: &broker.Account{Name: "X"}},
		},
		"BadSubject": {{Name: "a", Account: &broker.Account{Name: "X", Services: []broker.Service{{Subject: "a..b"}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			log, _ := testLogger()
			creds := t.TempDir()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			b, err := broker.Open(ctx, broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", CredentialsDir: creds, Roles: roles}, log)
			if err == nil {
				_ = b.Close(ctx)
			}
			require.ErrorIs(t, err, broker.ErrInvalidOption)
			entries, _ := os.ReadDir(creds)
			assert.Empty(t, entries, "no seed written for a server that did not start")
		})
	}
}
