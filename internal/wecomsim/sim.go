// Package wecomsim simulates WeCom's (企业微信) side of the chat-data keyword
// APIs over real HTTP, so that our API client and the whole receiver pipeline
// can be tested, and demonstrated, without reaching WeCom.
//
// On its clock it issues and expires access tokens (gettoken, suite and
// corp tokens), stores keyword rules per corp, generates seeded customer
// conversations, matches every message against the rules that exist at that
// moment, and serves the hits (get_hit_msg_list), search_msg and the zone's
// sync_call_program. It pushes encrypted callbacks (suite_ticket, hit_keyword,
// program_notify) the way WeCom does, records the ground truth of every hit,
// and injects faults on request. Corps install and remove the archive suite
// at run time (install.go: create_auth, cancel_auth, reset_permanent_code,
// get_permanent_code v1 and v2, get_auth_info), and thousands of corps can
// run at once (GenerateCorps).
//
// It keeps everything in memory and leaves to others: TLS, persistence, the
// zone program's own sandbox, set_public_key (encrypted_secret_key is random
// bytes, not a real RSA ciphertext), sync_msg and the other chat-data APIs.
// Where WeCom's behaviour is undocumented the code says which guess it made.
//
// # Time
//
// With a manual clock (Options.Speed 0) time moves only when a test calls
// Advance, from Options.Start. With Speed > 0 the simulator's clock is the
// real clock (Options.Clock), and Speed compresses only the conversation:
// messages arrive, and hit callbacks are coalesced, Speed times as often as
// MessageRate and HitNotifyInterval say. Everything WeCom measures against
// the clock stays real: callback TimeStamps and signatures, send_time,
// token and suite_ticket lifetimes, rate-limit windows, the 5-day hit window
// and search windows. So an accelerated simulator never stamps a callback
// or a message later than the receiver's own clock, however long it runs
// (an earlier model ran the whole clock fast, and after an hour its
// callbacks fell outside the receiver's replay window).
package wecomsim

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/crypto"
)

// ErrInvalidOption is returned by New for an unusable Options value.
var ErrInvalidOption = errors.New("wecomsim: invalid option")

// ErrUnknownCorp is returned for a corp id the simulator does not serve.
var ErrUnknownCorp = errors.New("wecomsim: unknown corp")

// Defaults applied by New to zero Options fields.
const (
	DefaultAccessTokenTTL        = 7200 * time.Second
	DefaultHitTokenTTL           = 10 * time.Minute
	DefaultTokenlessLimit        = 10
	DefaultMessageRate           = 2.0
	DefaultEmployees             = 6
	DefaultCustomers             = 12
	DefaultGroups                = 3
	DefaultHitNotifyInterval     = 5 * time.Second
	DefaultCallbackTimeout       = 5 * time.Second
	DefaultCallbackRetries       = 3
	DefaultCallbackRetryInterval = time.Second
)

// Options configures a Sim. Zero values take the defaults listed per field.
// At least one of Archive (SuiteID set) and Zone (CorpID set) is required.
type Options struct {
	// Seed makes the population and traffic reproducible. Tokens, cursors
	// and nonces come from a separate stream, so concurrent requests do not
	// change the traffic.
	Seed int64
	// Speed > 0 runs the simulator on Clock, with the conversation Speed
	// times faster than real (see "Time" in the package doc); 0 means a
	// manual clock that only Advance moves.
	Speed float64
	// Clock is the real clock of Speed mode. Default time.Now; tests
	// inject a fake one to run hours in seconds.
	Clock func() time.Time
	// Start is where a manual clock starts. Default: the real time at New,
	// truncated to the second. Speed mode ignores it: its clock is Clock.
	Start time.Time
	// MessageRate is the mean number of messages per conversation minute
	// per corp (Poisson arrivals); a conversation minute lasts 1/Speed real
	// minutes in Speed mode. 0 means DefaultMessageRate; negative turns
	// background traffic off, leaving GenerateMessages and SendMessage.
	MessageRate float64
	// Employees, Customers and Groups size each corp's population.
	// Defaults 6, 12 and 3.
	Employees, Customers, Groups int
	// AccessTokenTTL is the lifetime of access and suite access tokens.
	// Default 7200s.
	AccessTokenTTL time.Duration
	// HitTokenTTL is the lifetime of a hit token and a notify id. Default 10m.
	HitTokenTTL time.Duration
	// TokenlessLimit is how many get_hit_msg_list calls per minute of the
	// simulator's clock a corp may make without a valid hit token before
	// getting 45009.
	// WeCom only says the limit is "strict". Default 10.
	TokenlessLimit int
	// HitNotifyInterval coalesces hit callbacks: at most one hit_keyword /
	// program_notify per corp per interval of conversation time (divided by
	// Speed in Speed mode). Default 5s.
	HitNotifyInterval time.Duration
	// CallbackTimeout is the real-time deadline of one callback delivery.
	// Default 5s, as WeCom.
	CallbackTimeout time.Duration
	// CallbackRetries is how many times a failed callback is re-sent.
	// Default 3; negative means none.
	CallbackRetries int
	// CallbackRetryInterval is the real-time pause before a re-send. WeCom's
	// interval is undocumented. Default 1s.
	CallbackRetryInterval time.Duration
	// Archive is the 会话存档接口授权 suite and its corps.
	Archive Archive
	// Zone is the 数据与智能专区 app and its program.
	Zone Zone
	// Faults are active from the start; see SetFaults.
	Faults []Fault
}

// Archive configures the 会话存档接口授权 suite (transport A).
type Archive struct {
	SuiteID     string
	SuiteSecret string
	// Corps authorized the suite before the simulator started; each gets
	// its own population and rules. May be empty: corps then arrive with
	// AuthorizeCorp. GenerateCorps makes thousands.
	Corps []Corp
	// Token and EncodingAESKey sign and encrypt the 指令回调; receive id is
	// SuiteID.
	Token          string
	EncodingAESKey string
	// CallbackURL receives suite_ticket and hit_keyword; empty sends none.
	CallbackURL string
}

// Corp is a corp that authorized the archive suite.
type Corp struct {
	CorpID        string
	PermanentCode string
	// CorpName is what get_permanent_code and get_auth_info answer;
	// empty derives one from the id.
	CorpName string
	// MessageRate overrides Options.MessageRate for this corp, e.g. for
	// one hot corp among thousands; 0 keeps it.
	MessageRate float64
}

// Zone configures the 数据与智能专区 app and program (transport B).
type Zone struct {
	CorpID     string
	CorpSecret string
	ProgramID  string
	// Abilities maps an operation (get_hit_msg_list, create_rule,
	// get_rule_list, get_rule_detail, update_rule, delete_rule, search_msg)
	// to its ability id. Empty means "invoke_<operation>" for all.
	Abilities map[string]string
	// WrapIO makes abilities take {"input":…} and answer {"output":…}.
	WrapIO bool
	// Token and EncodingAESKey sign and encrypt program_notify; receive id
	// is CorpID.
	Token          string
	EncodingAESKey string
	// CallbackURL receives program_notify; empty sends none.
	CallbackURL string
}

// Sim is a running WeCom simulator. All methods are safe for concurrent use.
type Sim struct {
	opts Options
	log  zerolog.Logger

	archiveCrypt *crypto.Crypter
	zoneCrypt    *crypto.Crypter
	abilityOp    map[string]string // ability id → operation

	// ctx is cancelled by Close; it bounds callback deliveries, the clock
	// goroutine and hanging answers.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	client *http.Client

	mu        sync.Mutex
	closed    bool
	now       time.Time
	offset    time.Duration // Advance jumps
	running   bool          // Start has run: in Speed mode, Clock drives now
	traffic   *rand.Rand    // population and messages only
	ids       *rand.Rand    // tokens, ids, nonces, fault dice
	corps     map[string]*corpState
	order     []*corpState
	tokens    map[string]*accessToken
	current   map[string]*accessToken // credential key → newest token
	tickets   []suiteTicket           // newest last, at most 2
	ticketAt  time.Time               // next suite_ticket event
	pushed    bool                    // the first ticket has been pushed
	hitTokens map[string]*hitToken
	notifies  map[string]*notify
	hits      []Hit
	faults    []*faultState
	requests  map[string]int
	// corpRequests counts API requests per corp (Stats.CorpRequests).
	corpRequests map[string]int
	cbStats      map[string]CallbackCounts
	// answers logs every callback delivery's outcome (answers.go).
	answers        []Answer
	answersDropped int
	cursorKey      []byte
	lastPrune      time.Time
	auth           authState  // installation: see install.go
	queue          schedQueue // corps' due events: see sched.go

	srv *http.Server
	url string
}

// New validates opts, applies the defaults and builds the simulated corps. It
// does no I/O; Start serves. Errors match ErrInvalidOption.
func New(opts Options, log zerolog.Logger) (*Sim, error) {
	if err := applyDefaults(&opts); err != nil {
		return nil, err
	}
	s := &Sim{
		opts:         opts,
		log:          log.With().Str("component", "wecomsim").Logger(),
		abilityOp:    make(map[string]string),
		now:          opts.Start,
		lastPrune:    opts.Start,
		traffic:      rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed)),
		ids:          rand.New(rand.NewPCG(uint64(opts.Seed), 0x1d5)),
		corps:        make(map[string]*corpState),
		tokens:       make(map[string]*accessToken),
		current:      make(map[string]*accessToken),
		hitTokens:    make(map[string]*hitToken),
		notifies:     make(map[string]*notify),
		requests:     make(map[string]int),
		corpRequests: make(map[string]int),
		cbStats:      make(map[string]CallbackCounts),
		client:       &http.Client{Timeout: opts.CallbackTimeout},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cursorKey = make([]byte, 32)
	for i := range s.cursorKey {
		s.cursorKey[i] = byte(s.ids.Uint32())
	}
	var err error
	if a := opts.Archive; a.SuiteID != "" && a.CallbackURL != "" {
		if s.archiveCrypt, err = crypto.New(a.Token, a.EncodingAESKey, a.SuiteID); err != nil {
			return nil, fmt.Errorf("%w: archive EncodingAESKey: %w", ErrInvalidOption, err)
		}
	}
	if z := opts.Zone; z.CorpID != "" {
		for op, ab := range z.Abilities {
			s.abilityOp[ab] = op
		}
		if z.CallbackURL != "" {
			if s.zoneCrypt, err = crypto.New(z.Token, z.EncodingAESKey, z.CorpID); err != nil {
				return nil, fmt.Errorf("%w: zone EncodingAESKey: %w", ErrInvalidOption, err)
			}
		}
	}
	for _, c := range opts.Archive.Corps {
		cs := s.addCorp(c.CorpID)
		cs.archive = true
		s.installSeededLocked(c)
		if c.MessageRate > 0 {
			cs.rate = c.MessageRate
			cs.nextMsgAt = opts.Start.Add(s.gapLocked(cs))
		}
		s.scheduleMessageLocked(cs)
	}
	if opts.Zone.CorpID != "" {
		zc := s.addCorp(opts.Zone.CorpID)
		zc.zone = true
		s.scheduleMessageLocked(zc)
	}
	if err := s.SetFaults(opts.Faults...); err != nil {
		return nil, err
	}
	if opts.Archive.SuiteID != "" {
		// The first ticket exists from the start and is pushed when the
		// clock first runs; later ones rotate every 10 minutes.
		s.rotateTicketLocked()
		s.ticketAt = opts.Start
	}
	return s, nil
}

func applyDefaults(o *Options) error {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrInvalidOption, what) }
	if o.Archive.SuiteID == "" && o.Zone.CorpID == "" {
		return bad("need Archive.SuiteID or Zone.CorpID")
	}
	if o.Speed < 0 {
		return bad("Speed < 0")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Speed > 0 {
		o.Start = o.Clock()
	} else if o.Start.IsZero() {
		o.Start = o.Clock().Truncate(time.Second)
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setInt := func(n *int, def int) {
		if *n <= 0 {
			*n = def
		}
	}
	setDur(&o.AccessTokenTTL, DefaultAccessTokenTTL)
	setDur(&o.HitTokenTTL, DefaultHitTokenTTL)
	setDur(&o.HitNotifyInterval, DefaultHitNotifyInterval)
	setDur(&o.CallbackTimeout, DefaultCallbackTimeout)
	setDur(&o.CallbackRetryInterval, DefaultCallbackRetryInterval)
	setInt(&o.TokenlessLimit, DefaultTokenlessLimit)
	setInt(&o.Employees, DefaultEmployees)
	setInt(&o.Customers, DefaultCustomers)
	setInt(&o.Groups, DefaultGroups)
	switch {
	case o.CallbackRetries == 0:
		o.CallbackRetries = DefaultCallbackRetries
	case o.CallbackRetries < 0:
		o.CallbackRetries = 0
	}
	if o.MessageRate == 0 {
		o.MessageRate = DefaultMessageRate
	}
	if o.Zone.CorpID != "" && len(o.Zone.Abilities) == 0 {
		o.Zone.Abilities = make(map[string]string, len(operations))
		for _, op := range operations {
			o.Zone.Abilities[op] = "invoke_" + op
		}
	}
	seen := map[string]bool{}
	for _, c := range o.Archive.Corps {
		if c.CorpID == "" || seen[c.CorpID] {
			return bad("Archive.Corps: empty or duplicate CorpID")
		}
		if c.MessageRate < 0 {
			return bad("Archive.Corps: negative MessageRate")
		}
		seen[c.CorpID] = true
	}
	return nil
}

// operations are the chat-data operations, in the names of the HTTPS paths
// and of the zone SDK interfaces.
var operations = [...]string{
	"get_hit_msg_list", "create_rule", "get_rule_list", "get_rule_detail",
	"update_rule", "delete_rule", "search_msg",
}

// Start binds addr (use "127.0.0.1:0" in tests), serves in a goroutine and
// starts the clock: the first suite_ticket is pushed now, and in Speed mode
// time begins to run. ctx bounds the bind only; Close stops the rest. Bind
// errors are returned.
func (s *Sim) Start(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("wecomsim listen: %w", err)
	}
	s.mu.Lock()
	if s.closed || s.srv != nil {
		s.mu.Unlock()
		_ = ln.Close()
		return errors.New("wecomsim: already started or closed")
	}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.url = "http://" + ln.Addr().String()
	srv := s.srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("serve")
		}
	}()
	if s.opts.Speed > 0 {
		s.running = true
		s.wg.Add(1)
		go s.runClock()
	}
	s.runUntilLocked(s.targetLocked())
	s.mu.Unlock()
	return nil
}

// URL is the base URL the simulator serves, e.g. "http://127.0.0.1:41234";
// empty before Start.
func (s *Sim) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops the HTTP server, the clock and every callback delivery, and
// waits for them until ctx ends. It is idempotent.
func (s *Sim) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	srv := s.srv
	s.mu.Unlock()
	// Cancel first: hanging answers and callback retries end at once, so
	// Shutdown does not wait for them.
	s.cancel()
	var err error
	if srv != nil {
		// Graceful for requests in flight, but briefly: Shutdown counts a
		// connection that never sent a request as active for 5 s (net/http
		// clients leave such spares behind), so fall back to Close.
		shCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		if e := srv.Shutdown(shCtx); e != nil {
			if ce := srv.Close(); ce != nil {
				err = fmt.Errorf("wecomsim close: %w", ce)
			}
		}
		cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("wecomsim close: %w", ctx.Err()))
	}
	return err
}

// Now is the simulator's time: Clock in Speed mode (plus any Advance).
func (s *Sim) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// Advance moves the simulated clock forward by d and runs, in time order,
// whatever became due: traffic, suite_ticket pushes, hit callbacks. Token
// expiry follows from the clock. It also works in Speed mode, as a jump
// ahead of the real clock: a test's choice, which acceleration never makes.
func (s *Sim) Advance(d time.Duration) {
	if d < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	s.runUntilLocked(s.targetLocked())
}

func (s *Sim) targetLocked() time.Time {
	if s.opts.Speed > 0 && s.running {
		return s.opts.Clock().Add(s.offset)
	}
	return s.opts.Start.Add(s.offset)
}

// runClock drives the clock in Speed mode.
func (s *Sim) runClock() {
	defer s.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
			s.mu.Lock()
			s.runUntilLocked(s.targetLocked())
			s.mu.Unlock()
		}
	}
}

// conversation scales a conversation duration to the clock: divided by
// Speed in Speed mode.
func (s *Sim) conversation(d time.Duration) time.Duration {
	if s.opts.Speed > 0 {
		return time.Duration(float64(d) / s.opts.Speed)
	}
	return d
}

// runUntilLocked is a discrete-event loop: it runs the earliest due event,
// with the clock set to that event's time, until none is due before t.
// Corps' events come from a heap (sched.go), so thousands of corps cost
// O(log n) per event. On a tie the suite_ticket runs first, then hit
// callbacks, then messages.
func (s *Sim) runUntilLocked(t time.Time) {
	for {
		e, corpDue := s.nextCorpEventLocked()
		corpDue = corpDue && !e.at.After(t)
		ticketDue := s.opts.Archive.SuiteID != "" && !s.ticketAt.After(t)
		if ticketDue && (!corpDue || !e.at.Before(s.ticketAt)) {
			if s.ticketAt.After(s.now) {
				s.now = s.ticketAt
			}
			s.ticketEventLocked()
			continue
		}
		if !corpDue {
			break
		}
		heap.Pop(&s.queue)
		if e.at.After(s.now) {
			s.now = e.at
		}
		switch c := e.c; e.kind {
		case evNotify:
			s.notifyLocked(c)
		case evMessage:
			s.recordLocked(c, s.generateLocked(c))
			c.nextMsgAt = c.nextMsgAt.Add(s.gapLocked(c))
			s.scheduleMessageLocked(c)
		}
	}
	if t.After(s.now) {
		s.now = t
	}
	s.pruneLocked()
}

// Requests returns how many requests an API received, whatever their
// outcome: "gettoken", "get_suite_token", "get_corp_token",
// "sync_call_program", or an operation name such as "get_hit_msg_list",
// which counts both the HTTPS path and sync_call_program calls of the
// ability mapped to it.
func (s *Sim) Requests(api string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[api]
}

func (s *Sim) countLocked(api string) { s.requests[api]++ }
