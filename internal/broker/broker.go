// Package broker gives the receiver its NATS connection: it starts the
// embedded JetStream server, or connects to an existing server or cluster.
// An embedded server that listens on TCP admits only clients that log in
// with a role's nkey, each in the receiver's account or in one of its own
// (auth.go).
//
// It knows nothing about streams, subjects or records; intake and publish
// set up their own streams on the JetStream context it hands out, and the
// caller says what each role may do. What it gives them beyond the
// connection is how to speak to JetStream: a publish retried until the
// caller's deadline (publish.go) and the client side of fast batches,
// their wire protocol and the rule that says what a batch stored
// (fastbatch.go); when and how to batch is theirs.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/netutil"
)

// Defaults for Options left zero.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultName           = "wecom-receiver"
	// DefaultPingInterval and DefaultMaxPingsOutstanding notice a server
	// that stopped answering (a node cut off by a partition, its TCP link
	// still open) within 6-8 s: once MaxPingsOutstanding pings in a row
	// have gone unanswered, the next ping's turn drops the link and the
	// client reconnects to another server. nats.go's defaults (2 minutes
	// x 2) take up to 4 minutes, answering 503 all along. A ping every 2 s
	// costs a few bytes.
	DefaultPingInterval        = 2 * time.Second
	DefaultMaxPingsOutstanding = 3
)

// asyncAckTimeout bounds the wait for one async publish's ack.
const asyncAckTimeout = 5 * time.Second

// serverName names the embedded server in its logs and in JetStream
// metadata. Fixed, so a restart on the same store is the same server.
const serverName = "wecom-receiver"

// Reconnect pacing (250-500ms, 250ms-1s with TLS): a short base wait keeps
// a rolling restart of a cluster node short, the jitter keeps many receivers
// from reconnecting in lockstep.
const (
	reconnectWait      = 250 * time.Millisecond
	reconnectJitter    = 250 * time.Millisecond
	reconnectJitterTLS = 750 * time.Millisecond
)

var (
	// ErrInvalidOption: Options has a bad or incomplete value.
	ErrInvalidOption = errors.New("broker: invalid option")
	// ErrNotConnected: the NATS connection is not in the connected state;
	// Ready wraps it with the state's name.
	ErrNotConnected = errors.New("broker: nats not connected")
)

// Options says which NATS to use. Zero values take the defaults noted.
type Options struct {
	// URLs of an existing server or cluster. Empty: start an embedded server.
	URLs []string
	// StoreDir is the embedded JetStream file store directory. Required when
	// embedded.
	StoreDir string
	// Listen is the embedded server's "host:port" for TCP clients (port 0
	// picks one). Empty: in-process clients only. A listening server
	// requires every TCP client to log in as one of Roles (auth.go).
	Listen string
	// CredentialsDir holds the Roles' nkey seed files, created on first
	// start (auth.go). Required when Listen is set.
	CredentialsDir string
	// Roles are the TCP users of a listening embedded server.
	Roles []Role
	// SyncAlways makes the embedded server fsync every write, instead of
	// every two minutes: slower, but an acked callback survives power loss.
	SyncAlways bool

	// CredentialsFile logs in to an external server (or to an embedded
	// server's listener): a NATS .creds file, or an nkey seed file such as
	// the ones in CredentialsDir.
	CredentialsFile string
	// InboxPrefix replaces nats.go's "_INBOX" as the first token of reply
	// subjects, so that clients allowed to subscribe to _INBOX.> (the
	// consumer role) never see this connection's replies; empty keeps it.
	InboxPrefix string
	// TLS for an external server: CA to verify it, client cert and key
	// (both or neither).
	TLSCAFile, TLSCertFile, TLSKeyFile string

	// MaxStore caps the embedded server's JetStream file store, in bytes
	// (server.Options.JetStreamMaxStore): every stream's and bucket's
	// MaxBytes must fit in it, since the server reserves them. 0: the
	// server's default (most of the disk).
	MaxStore int64

	// ConnectTimeout bounds the embedded server's start-up and each dial;
	// default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// PingInterval and MaxPingsOutstanding bound how long a dead link goes
	// unnoticed: about PingInterval x (MaxPingsOutstanding+1). Defaults
	// DefaultPingInterval and DefaultMaxPingsOutstanding.
	PingInterval        time.Duration
	MaxPingsOutstanding int
	// Name is the client connection name; default DefaultName.
	Name string
}

// Broker owns one NATS connection and, when embedded, the server behind it.
type Broker struct {
	log zerolog.Logger
	srv *server.Server // nil when external
	nc  *nats.Conn
	js  jetstream.JetStream

	// closed is closed by the connection's ClosedHandler, which runs once the
	// connection is closed for good (after a drain, or a failed one).
	closed chan struct{}

	closing   atomic.Bool // set by Close, to tell our disconnect from an outage
	lock      *storeLock  // the store dir's lock, nil when external
	storeErr  atomic.Bool // a stream of the embedded server cannot write (recover.go)
	restarts  atomic.Uint64
	stopWatch context.CancelFunc // ends watchStore; nil when external
	watchDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open starts the embedded server (when opts.URLs is empty) or connects to
// the external one, and returns once the connection is up; it fails rather
// than retries when the first connect fails, so a misconfigured URL shows at
// start-up. Afterwards an external connection reconnects forever.
//
// ctx bounds the embedded server's start-up; for an external server, a
// deadline on ctx caps each dial (nats.Connect takes no context).
// Bad options give an error wrapping ErrInvalidOption.
func Open(ctx context.Context, opts Options, log zerolog.Logger) (*Broker, error) {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.MaxPingsOutstanding == 0 {
		opts.MaxPingsOutstanding = DefaultMaxPingsOutstanding
	}
	if opts.PingInterval < 0 || opts.MaxPingsOutstanding < 0 {
		return nil, fmt.Errorf("%w: negative ping interval or max pings outstanding", ErrInvalidOption)
	}
	b := &Broker{
		log:    log.With().Str("component", "broker").Logger(),
		closed: make(chan struct{}),
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("broker: open: %w", err)
	}
	var err error
	if len(opts.URLs) == 0 {
		err = b.openEmbedded(ctx, opts, log.With().Str("component", "nats-server").Logger())
		if err != nil {
			b.lock.release() // its failure paths that did not shut a server down
		}
	} else {
		err = b.openExternal(ctx, opts)
	}
	if err != nil {
		return nil, err
	}
	// Bound each async publish's wait for its ack: when a stream's leader
	// dies mid-page its acks never come, and without a bound a fetch would
	// hold its lease until the page's own deadline (a minute) passes. The
	// page then fails fast, is fetched again, and de-duplication drops what
	// was stored.
	b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		b.nc.Close()
		b.shutdownServer()
		return nil, fmt.Errorf("broker: jetstream: %w", err)
	}
	return b, nil
}

// openEmbedded starts the embedded server on opts.StoreDir and connects
// to it in-process. Its failures before the server started leave the
// store's lock for Open to release; once the server runs, a failure shuts
// it down, which releases the lock too.
func (b *Broker) openEmbedded(ctx context.Context, opts Options, srvLog zerolog.Logger) error {
	if opts.StoreDir == "" {
		return fmt.Errorf("%w: embedded server needs a store dir", ErrInvalidOption)
	}
	if opts.MaxStore < 0 {
		return fmt.Errorf("%w: negative max store", ErrInvalidOption)
	}
	// One process per store: a second JetStream server on the same files
	// would corrupt them. Taken before the server touches the directory.
	lock, err := lockStore(opts.StoreDir)
	if err != nil {
		return err
	}
	b.lock = lock
	sopts := embeddedServerOptions(opts)
	var self nkeys.KeyPair // the receiver's own login, when the server listens
	ownAccounts := false   // some role has an account apart from the receiver's
	if opts.Listen != "" {
		if self, ownAccounts, err = b.configureListener(sopts, opts); err != nil {
			return err
		}
	}
	if err := b.startServer(ctx, sopts, opts.ConnectTimeout, srvLog, ownAccounts); err != nil {
		return err
	}
	if err := b.connectEmbedded(opts, self); err != nil {
		b.shutdownServer()
		return err
	}
	watchCtx, stop := context.WithCancel(context.Background())
	b.stopWatch, b.watchDone = stop, make(chan struct{})
	go func() {
		defer close(b.watchDone)
		b.watchStore(watchCtx, opts.StoreDir)
	}()
	ev := b.log.Info().Str("store_dir", opts.StoreDir).Bool("sync_always", opts.SyncAlways).
		Str("client_url", b.ClientURL())
	if self != nil {
		ev = ev.Str("credentials_dir", opts.CredentialsDir)
	}
	ev.Msg("embedded nats-server started")
	return nil
}

// embeddedServerOptions are the embedded server's options before the
// listener's: JetStream on the store, and no TCP listener.
func embeddedServerOptions(opts Options) *server.Options {
	return &server.Options{
		ServerName: serverName,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		SyncAlways: opts.SyncAlways,
		// The streams' and buckets' limits are reserved against it, and a
		// full store refuses writes with an error intake recognises.
		JetStreamMaxStore: opts.MaxStore,
		DontListen:        opts.Listen == "",
		// Signals belong to main, which turns them into ctx cancellation.
		NoSigs: true,
	}
}

// configureListener sets sopts up to listen on opts.Listen for the roles'
// nkey logins, each role in the receiver's account or its own. It returns
// the receiver's own key pair, for its in-process login, and whether any
// role has an account of its own (then the receiver's account needs
// JetStream enabled by hand: startServer).
func (b *Broker) configureListener(sopts *server.Options, opts Options) (nkeys.KeyPair, bool, error) {
	host, port, err := splitListen(opts.Listen)
	if err != nil {
		return nil, false, err
	}
	sopts.Host, sopts.Port = host, port
	recv, accounts, err := roleAccounts(opts.Roles)
	if err != nil {
		return nil, false, err
	}
	users, self, err := authUsers(opts.CredentialsDir, opts.Roles, accounts)
	if err != nil {
		return nil, false, err
	}
	sopts.Nkeys = users
	ownAccounts := recv != nil
	if ownAccounts {
		sopts.Accounts = append(sopts.Accounts, recv)
		for _, a := range accounts {
			sopts.Accounts = append(sopts.Accounts, a)
		}
	}
	if !netutil.IsLoopback(host) {
		b.log.Warn().Str("listen", opts.Listen).
			Msg("embedded nats-server listens on a non-loopback address without TLS: logins are nkey challenges, but messages cross the network in clear")
	}
	return self, ownAccounts, nil
}

// startServer starts the embedded server with sopts and waits, at most
// timeout, until it accepts clients with JetStream on. From srv.Start on
// the server is b's, and a failure shuts it down.
func (b *Broker) startServer(ctx context.Context, sopts *server.Options, timeout time.Duration, srvLog zerolog.Logger, ownAccounts bool) error {
	srv, err := server.NewServer(sopts)
	if err != nil {
		return fmt.Errorf("broker: start embedded nats-server: %w", err)
	}
	fatal := make(chan string, 1)
	// Debug and trace stay off: they log every protocol line.
	srv.SetLoggerV2(serverLogger{log: srvLog, fatal: fatal}, false, false, false)
	srv.Start()
	b.srv = srv
	if err := waitReady(ctx, srv, timeout, fatal); err != nil {
		b.shutdownServer()
		return fmt.Errorf("broker: start embedded nats-server: %w", err)
	}
	if ownAccounts {
		// A server with accounts enables JetStream only in those
		// configured for it, and the global account cannot be (its name
		// is reserved in configurations, and Options cannot say it):
		// enable it here, which also reads back what the store holds.
		if err := srv.GlobalAccount().EnableJetStream(nil, nil); err != nil {
			b.shutdownServer()
			return fmt.Errorf("broker: start embedded nats-server: jetstream in the receiver's account: %w", err)
		}
	}
	if !srv.JetStreamEnabled() {
		b.shutdownServer()
		return errors.New("broker: start embedded nats-server: jetstream is not enabled")
	}
	return nil
}

// connectEmbedded opens b's connection to the running embedded server,
// logged in with self when the server listens (nil: it does not, and
// in-process clients need no login).
func (b *Broker) connectEmbedded(opts Options, self nkeys.KeyPair) error {
	// The URL only fills the client's server pool; InProcessServer makes it
	// connect through a pipe instead of dialing.
	no := append(b.connOptions(opts),
		nats.Timeout(opts.ConnectTimeout),
		nats.InProcessServer(b.srv),
	)
	if self != nil {
		pub, err := self.PublicKey()
		if err != nil {
			return fmt.Errorf("broker: receiver nkey: %w", err)
		}
		no = append(no, nats.Nkey(pub, self.Sign))
	}
	nc, err := nats.Connect(b.srv.ClientURL(), no...)
	if err != nil {
		return fmt.Errorf("broker: connect to embedded nats-server: %w", err)
	}
	b.nc = nc
	return nil
}

// waitReady waits for srv to accept clients, for at most d or until ctx is
// done, whichever comes first. A Fatalf from the server (read from fatal)
// means it gave up on start-up (say, an unusable store dir): that ends the
// wait at once, with the server's message.
func waitReady(ctx context.Context, srv *server.Server, d time.Duration, fatal <-chan string) error {
	deadline := time.Now().Add(d)
	// ReadyForConnections takes no context: ask in short slices and check
	// ctx and fatal in between.
	const slice = 50 * time.Millisecond
	for {
		if srv.ReadyForConnections(slice) {
			return nil
		}
		select {
		case msg := <-fatal:
			return errors.New(msg)
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready for connections after %s", d)
		}
	}
}

func (b *Broker) openExternal(ctx context.Context, opts Options) error {
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return fmt.Errorf("%w: TLS client cert and key go together", ErrInvalidOption)
	}
	timeout := opts.ConnectTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	no := b.connOptions(opts)
	no = append(no,
		nats.Timeout(timeout),
		// Fail at start-up rather than wait for a server that may never
		// come; once connected, reconnect forever (connOptions).
		nats.RetryOnFailedConnect(false),
		// A write to a node cut off by a partition blocks once the
		// socket's buffers are full, and holds the client's lock while it
		// does, so the pings that would notice the dead link cannot run:
		// a fault test saw a receiver sit on a cut node for a minute
		// (nats.go's default write timeout), answering 503. A write that
		// takes as long as the pings allow a silent link fails instead,
		// and the client reconnects elsewhere. What the client had
		// buffered is lost with the link, as on any disconnect: every
		// publish of ours waits for its ack and is sent again without one.
		nats.FlusherTimeout(writeTimeout(opts)),
		nats.ReconnectOnFlusherError(),
	)
	if opts.CredentialsFile != "" {
		o, err := credsOption(opts.CredentialsFile)
		if err != nil {
			return err
		}
		no = append(no, o)
	}
	if opts.TLSCAFile != "" {
		no = append(no, nats.RootCAs(opts.TLSCAFile))
	}
	if opts.TLSCertFile != "" {
		no = append(no, nats.ClientCert(opts.TLSCertFile, opts.TLSKeyFile))
	}
	servers := make([]string, len(opts.URLs))
	for i, u := range opts.URLs {
		servers[i] = redactURL(u)
	}
	b.log.Info().Strs("servers", servers).Msg("connecting to nats")
	nc, err := nats.Connect(strings.Join(opts.URLs, ","), no...)
	if err != nil {
		return fmt.Errorf("broker: connect to nats %s: %w", strings.Join(servers, ","), err)
	}
	b.nc = nc
	b.log.Info().Str("url", b.ClientURL()).Msg("connected to nats")
	return nil
}

// minWriteTimeout is the least time a write to an external server gets,
// whatever the pings: after a reconnect the client writes what it
// buffered meanwhile (up to nats.go's 8 MB) in one go, which pings of
// 100 ms would otherwise cut off after 200 ms, and the link would churn.
const minWriteTimeout = 5 * time.Second

// writeTimeout is how long a write to an external server may block before
// the link is given up: as long as the pings let a silent link go (ping
// interval x (max pings out + 1)), but at least minWriteTimeout.
func writeTimeout(opts Options) time.Duration {
	return max(opts.PingInterval*time.Duration(opts.MaxPingsOutstanding+1), minWriteTimeout)
}

// connOptions are the options both kinds of connection share: the name,
// pings that notice a dead link, reconnecting forever (the endpoint answers
// 5xx meanwhile, /readyz fails, and WeCom retries) to any server of the
// cluster, the configured ones and those the servers announce, in random
// order (nats.go's default, which spreads replicas over the nodes), and
// handlers that log connection events. The handlers run on the client's
// callback goroutine and log no credentials: URLs go through redactURL.
func (b *Broker) connOptions(opts Options) []nats.Option {
	no := []nats.Option{
		nats.Name(opts.Name),
		nats.PingInterval(opts.PingInterval),
		nats.MaxPingsOutstanding(opts.MaxPingsOutstanding),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitterTLS),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			ev := b.log.Warn()
			if b.closing.Load() {
				ev = b.log.Debug() // our own Close
			}
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info().Str("url", redactURL(nc.ConnectedUrl())).Uint64("reconnects", nc.Stats().Reconnects).
				Msg("nats reconnected")
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			b.log.Info().Str("url", redactURL(nc.ConnectedUrl())).
				Msg("nats server entering lame duck mode; will reconnect elsewhere")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := b.log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			b.log.Debug().Msg("nats connection closed")
			close(b.closed)
		}),
	}
	if opts.InboxPrefix != "" {
		no = append(no, nats.CustomInboxPrefix(opts.InboxPrefix))
	}
	return no
}

// Conn returns the NATS connection.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// JetStream returns the JetStream context on Conn.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// Embedded reports whether Open started an embedded server.
func (b *Broker) Embedded() bool { return b.srv != nil }

// ClientURL is where other clients can reach the server: for an embedded
// server that listens, nats://host:port; for an external one, the URL
// currently connected to, without user info. "" for an in-process-only
// embedded server, or while disconnected.
func (b *Broker) ClientURL() string {
	if b.srv != nil {
		if b.srv.Addr() == nil {
			return ""
		}
		return b.srv.ClientURL()
	}
	return redactURL(b.nc.ConnectedUrl())
}

// Ready returns nil while the connection is connected, and otherwise an
// error wrapping ErrNotConnected that names the state (RECONNECTING,
// DRAINING_PUBS, CLOSED, ...). It does no I/O; it is for /readyz.
func (b *Broker) Ready() error {
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: %s", ErrNotConnected, st)
	}
	if b.storeErr.Load() {
		return ErrStoreWrite
	}
	return nil
}

// Close drains the connection, so pending publishes are flushed and their
// acks read, then shuts the embedded server down and waits for it. If ctx
// ends first the connection is closed without finishing the drain and
// ctx's error is returned (the server is still shut down). Calls after the
// first return the first call's result.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.close(ctx) })
	return b.closeErr
}

func (b *Broker) close(ctx context.Context) error {
	b.closing.Store(true)
	var errs []error
	switch err := b.nc.Drain(); {
	case err == nil:
		select {
		case <-b.closed:
		case <-ctx.Done():
			b.nc.Close()
			errs = append(errs, fmt.Errorf("broker: drain nats connection: %w", ctx.Err()))
		}
	case errors.Is(err, nats.ErrConnectionClosed):
		// Closed already; nothing to drain.
	case errors.Is(err, nats.ErrConnectionReconnecting):
		// Drain closed the connection: whatever sat in the reconnect buffer is
		// lost, and its publishers have seen (or will see) errors.
		b.log.Warn().Msg("nats connection closed while reconnecting; buffered publishes dropped")
	default:
		b.nc.Close()
		errs = append(errs, fmt.Errorf("broker: drain nats connection: %w", err))
	}
	b.shutdownServer()
	return errors.Join(errs...)
}

func (b *Broker) shutdownServer() {
	if b.stopWatch != nil {
		b.stopWatch()
		<-b.watchDone
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.log.Info().Msg("embedded nats-server stopped")
	}
	// Only once the server has stopped writing may another process take
	// the store.
	b.lock.release()
	b.lock = nil
}

// splitListen turns "host:port" into server options; port 0 means any free
// port, which nats-server spells -1 (its 0 means 4222).
func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("%w: listen %q: %w", ErrInvalidOption, listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: listen %q: bad port", ErrInvalidOption, listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// redactURL drops the user info (user, password or token) from a NATS URL
// for logs and errors. url.URL.Redacted would keep the user name, which for
// nats://TOKEN@host is the secret itself.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	raw := s
	if !strings.Contains(raw, "://") {
		// nats.go accepts "host:port"; url.Parse would read host as a scheme.
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Never echo what we could not parse: it may hold a password.
		return "(unparseable url)"
	}
	u.User = nil
	return u.String()
}

// serverLogger routes the embedded server's log to zerolog. Notices go to
// debug: at start-up they are a banner of some twenty lines, and Open logs
// the one line an operator needs (store dir and client URL). Fatalf logs at error level and does not exit: the server calls it
// for start-up failures it then returns from (JetStream cannot start, a
// listener cannot bind), exiting is main's decision, and Open learns of it
// through fatal (first message only) and fails.
type serverLogger struct {
	log   zerolog.Logger
	fatal chan<- string
}

var _ server.Logger = serverLogger{}

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error().Bool("fatal", true).Msg(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l serverLogger) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }
