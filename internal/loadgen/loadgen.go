// Package loadgen drives a callback endpoint with distinct, validly signed
// WeCom callbacks, open loop: each callback has a scheduled send time, and
// its latency runs from that time, so a slow server is charged for the
// callbacks that queued behind a slow answer (no coordinated omission).
// Afterwards it can read the records the receiver stored and compare them
// with the callbacks that were answered 200.
//
// It only generates load and measures; starting servers and sampling their
// CPU and memory is left to bench/run.
package loadgen

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/netutil"
)

// ErrInvalidConfig: Run was given a config it cannot run.
var ErrInvalidConfig = errors.New("loadgen: invalid config")

// maxRate is the highest Rate: one callback a nanosecond.
const maxRate = 1e9

// Kinds are the callback kinds Run can send, each as WeCom words it.
var Kinds = []string{"hit_keyword", "conversation_new_message", "suite_ticket", "program_notify", "msgaudit_notify", "unknown"}

// Config is one run.
type Config struct {
	// URL is the callback endpoint, e.g. http://127.0.0.1:8080/callback/archive.
	URL string
	// App is the app name the receiver derives record ids with; default
	// the URL's last path segment.
	App string
	// Token, EncodingAESKey and ReceiveID are the app's callback secrets
	// and the receive id its callbacks must carry (suite id or corp id).
	Token, EncodingAESKey, ReceiveID string
	// Kind of every callback (Kinds). Default hit_keyword.
	Kind string
	// SuiteID and CorpID fill the payloads. Defaults: ReceiveID and "wwLoadgenCorp".
	SuiteID, CorpID string
	// Rate is callbacks per second, scheduled at even intervals; 0 sends
	// as fast as the connections allow (closed loop: latency is then
	// service time only).
	Rate float64
	// Conns is the number of concurrent connections. Default 64.
	Conns int
	// Duration and N bound the run; at least one must be set, and the
	// run stops at whichever comes first.
	Duration time.Duration
	N        int
	// Timeout bounds one request. Default 5s.
	Timeout time.Duration
	// AllowRemote lets URL name a host that is not loopback.
	AllowRemote bool
}

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return fmt.Errorf("%w: url required", ErrInvalidConfig)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: url %q is not an http(s) URL", ErrInvalidConfig, c.URL)
	}
	if !c.AllowRemote && !netutil.IsLoopback(u.Hostname()) {
		return fmt.Errorf("%w: %s is not a loopback host (allow it explicitly)", ErrInvalidConfig, u.Hostname())
	}
	if c.App == "" {
		c.App = u.Path[strings.LastIndexByte(u.Path, '/')+1:]
	}
	if c.App == "" {
		return fmt.Errorf("%w: app required (the URL has no last path segment)", ErrInvalidConfig)
	}
	if c.Kind == "" {
		c.Kind = "hit_keyword"
	}
	known := false
	for _, k := range Kinds {
		known = known || k == c.Kind
	}
	if !known {
		return fmt.Errorf("%w: kind %q (one of %s)", ErrInvalidConfig, c.Kind, strings.Join(Kinds, ", "))
	}
	if c.SuiteID == "" {
		c.SuiteID = c.ReceiveID
	}
	if c.CorpID == "" {
		c.CorpID = "wwLoadgenCorp"
	}
	if c.Rate < 0 {
		return fmt.Errorf("%w: rate %v is negative", ErrInvalidConfig, c.Rate)
	}
	// The schedule steps in whole nanoseconds: a rate whose interval
	// rounds to zero (or is not a number) cannot be scheduled.
	if math.IsNaN(c.Rate) || c.Rate > maxRate {
		return fmt.Errorf("%w: rate %v: at most %v per second", ErrInvalidConfig, c.Rate, float64(maxRate))
	}
	if c.Conns == 0 {
		c.Conns = 64
	}
	if c.Conns < 0 || c.Conns > 10000 {
		return fmt.Errorf("%w: conns %d out of 1..10000", ErrInvalidConfig, c.Conns)
	}
	if c.Duration <= 0 && c.N <= 0 {
		return fmt.Errorf("%w: a bound is required: duration or n", ErrInvalidConfig)
	}
	if c.Duration < 0 || c.N < 0 {
		return fmt.Errorf("%w: negative duration or n", ErrInvalidConfig)
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	// Sent counts requests started; Answered those with an HTTP answer;
	// Errors those without (transport errors and timeouts, and at a
	// rate, callbacks that were due but still unsent when the run's time
	// was up).
	Sent, Answered, Errors int
	// Status counts answers by HTTP status.
	Status map[int]int
	// Elapsed is from the first scheduled send to the last answer.
	Elapsed time.Duration
	// Latency is from each callback's scheduled send time to its answer
	// (or error).
	Latency *Histogram
	// OK holds the record id of every callback answered 200.
	OK map[string]struct{}
	// All holds the record id of every callback sent.
	All map[string]struct{}
	// FirstError is one transport error, for the report.
	FirstError string
}

// Throughput is 200 answers per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Status[http.StatusOK]) / r.Elapsed.Seconds()
}

// job is one callback to send: its sequence number and scheduled time.
type job struct {
	seq  int
	when time.Time
}

// worker is one sender's own tallies, merged at the end, and its buffers,
// reused for each callback it sends.
type worker struct {
	hist   *Histogram
	status map[int]int
	// ok and all hold record ids as their 16 bytes: memory the collector
	// need not trace while the run grows them (half a million ids in a
	// 10 s run), which as strings cost loadgen a few percent of its CPU
	// in marking, taken from the server under test on shared cores.
	ok, all []idBytes
	errs    int
	first   error

	post             post
	ts, nonce, plain []byte
}

// runner is what every sender of a run shares, read-only.
type runner struct {
	cfg    *Config
	cr     *crypto.Crypter
	client *client
	// uriPrefix is the URL up to the signature's value; bodyHead the
	// envelope up to the ciphertext.
	uriPrefix, bodyHead string
}

// newRunner is the request builder and sender for cfg; client may be nil
// where nothing is sent (BenchmarkBuild).
func newRunner(cfg *Config, cr *crypto.Crypter, c *client) *runner {
	return &runner{cfg: cfg, cr: cr, client: c,
		uriPrefix: cfg.URL + "?msg_signature=",
		bodyHead:  "<xml><ToUserName><![CDATA[" + cfg.ReceiveID + "]]></ToUserName><Encrypt><![CDATA["}
}

// Run sends callbacks as cfg says until its bound, or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cr, err := crypto.New(cfg.Token, cfg.EncodingAESKey, cfg.ReceiveID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	u, err := url.Parse(cfg.URL) // parsed by setDefaults already
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration+cfg.Timeout)
		defer cancel()
	}
	r := newRunner(&cfg, cr, newClient(ctx, &cfg, u))
	defer r.client.close()

	start := time.Now()
	ws := make([]*worker, cfg.Conns)
	for i := range ws {
		ws[i] = &worker{hist: NewHistogram(), status: map[int]int{}}
	}
	send := func(w *worker, j job) { w.send(ctx, r, j) }
	if cfg.Rate > 0 {
		openLoop(ctx, cfg, start, ws, send)
	} else {
		closedLoop(ctx, &cfg, start, ws, send)
	}
	return merge(ws, time.Since(start)), nil
}

// openLoop sends at cfg.Rate: schedule hands each callback to whichever
// sender is free, at its scheduled time, whether or not the earlier ones
// were answered, and the senders stop once it closes the queue.
func openLoop(ctx context.Context, cfg Config, start time.Time, ws []*worker, send func(*worker, job)) {
	jobs := make(chan job, 4096)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for j := range jobs {
				send(w, j)
			}
		})
	}
	schedule(ctx, cfg, start, jobs)
	wg.Wait()
}

// closedLoop sends as fast as the senders are answered: each sends its
// next callback when its last one is done, scheduled at the moment it is
// sent, until the bound or ctx ends.
func closedLoop(ctx context.Context, cfg *Config, start time.Time, ws []*worker, send func(*worker, job)) {
	var seq atomic.Int64
	// next hands out sequence numbers up to the bound: the count bound
	// and the time bound, which at a rate is schedule's to keep.
	next := func() (int, bool) {
		n := int(seq.Add(1)) - 1
		if cfg.N > 0 && n >= cfg.N {
			return 0, false
		}
		if cfg.Duration > 0 && time.Since(start) >= cfg.Duration {
			return 0, false
		}
		return n, true
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for ctx.Err() == nil {
				n, ok := next()
				if !ok {
					return
				}
				send(w, job{seq: n, when: time.Now()})
			}
		})
	}
	wg.Wait()
}

// merge adds up the senders' own tallies, kept apart while they ran so
// that sending takes no shared lock.
func merge(ws []*worker, elapsed time.Duration) *Result {
	res := &Result{Status: map[int]int{}, Latency: NewHistogram(), OK: map[string]struct{}{}, All: map[string]struct{}{},
		Elapsed: elapsed}
	for _, w := range ws {
		res.Latency.Merge(w.hist)
		for code, n := range w.status {
			res.Status[code] += n
			res.Answered += n
		}
		res.Errors += w.errs
		for _, id := range w.ok {
			res.OK[id.String()] = struct{}{}
		}
		for _, id := range w.all {
			res.All[id.String()] = struct{}{}
		}
		if w.first != nil && res.FirstError == "" {
			res.FirstError = w.first.Error()
		}
	}
	res.Sent = res.Answered + res.Errors
	return res
}

// schedule queues callback i for start + i/rate until the bound, then
// closes jobs. It wakes often and queues every callback already due, so
// its own lateness never thins the load: a job's time is its schedule,
// not when it was queued. A full queue blocks it, and the waiting shows
// up in the latencies, as it should.
func schedule(ctx context.Context, cfg Config, start time.Time, jobs chan<- job) {
	defer close(jobs)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := cfg.N
	if cfg.Duration > 0 {
		byTime := int(cfg.Duration.Seconds() * cfg.Rate)
		if total == 0 || byTime < total {
			total = byTime
		}
	}
	for i := 0; i < total; {
		due := int(time.Since(start)/interval) + 1
		for ; i < total && i < due; i++ {
			select {
			case jobs <- job{seq: i, when: start.Add(time.Duration(i) * interval)}:
			case <-ctx.Done():
				// Out of time with callbacks due and unsent (a server
				// that fell behind): queue them anyway. The senders,
				// their ctx done, fail each at once and record it as
				// an error with its latency so far, so the worst
				// latencies of a saturated run are not left out.
				for due = int(time.Since(start)/interval) + 1; i < total && i < due; i++ {
					jobs <- job{seq: i, when: start.Add(time.Duration(i) * interval)}
				}
				return
			}
		}
		if i < total {
			wait := time.Until(start.Add(time.Duration(i) * interval))
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
	}
}

// send seals and posts callback j and records the outcome.
func (w *worker) send(ctx context.Context, r *runner, j job) {
	if ctx.Err() != nil {
		// Due after the run's time was up (schedule's last queue):
		// counted, with its latency so far, and not sent.
		w.fail(j, ctx.Err())
		return
	}
	now := time.Now()
	id, err := w.build(r, j.seq, now)
	if err != nil {
		w.fail(j, err)
		return
	}
	w.all = append(w.all, id)
	deadline := now.Add(r.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	code, err := r.client.do(&w.post, deadline)
	if err != nil {
		w.fail(j, err)
		return
	}
	w.hist.Record(time.Since(j.when))
	w.status[code]++
	if code == http.StatusOK {
		w.ok = append(w.ok, id)
	}
}

// idBytes is a record id as the 16 bytes its 32 hex digits spell
// (callback.CallbackKey and CallbackID).
type idBytes [16]byte

func (b idBytes) String() string { return hex.EncodeToString(b[:]) }

// build seals callback seq, timestamped now, into w.post's request, in
// place, and returns its record id.
func (w *worker) build(r *runner, seq int, now time.Time) (id idBytes, err error) {
	w.ts = strconv.AppendInt(w.ts[:0], now.Unix(), 10)
	w.nonce = strconv.AppendInt(w.nonce[:0], int64(seq), 10)
	ts, nonce := string(w.ts), string(w.nonce)
	w.plain = appendPayload(w.plain[:0], r.cfg, w.nonce, w.ts)
	// Encrypt's random prefix makes every ciphertext, and so every
	// record id, distinct; the sequence number in the payload makes the
	// plaintexts distinct too.
	enc, sig, err := r.cr.Seal(string(w.plain), ts, nonce)
	if err != nil {
		return id, err
	}
	p := &w.post
	p.uri = append(append(append(append(append(append(p.uri[:0], r.uriPrefix...), sig...), "&timestamp="...), ts...),
		"&nonce="...), nonce...)
	p.req.SetRequestURIBytes(p.uri)
	p.req.Header.SetMethod(http.MethodPost)
	p.req.Header.SetContentType("text/xml")
	p.req.ResetBody()
	p.req.AppendBodyString(r.bodyHead)
	p.req.AppendBodyString(enc)
	p.req.AppendBodyString(bodyTail)
	return callback.CallbackKey(r.cfg.App, enc), nil
}

// bodyTail ends every callback's envelope, after the ciphertext.
const bodyTail = "]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"

func (w *worker) fail(j job, err error) {
	w.hist.Record(time.Since(j.when))
	w.errs++
	if w.first == nil {
		w.first = err
	}
}

// appendPayload appends the plaintext of callback seq of cfg.Kind, shaped
// as WeCom sends that kind, to dst. Each kind's own field is head, the
// sequence number and tail.
func appendPayload(dst []byte, cfg *Config, seq, ts []byte) []byte {
	suite := func(infoType, head, tail string) []byte {
		dst = append(dst, "<xml><SuiteId><![CDATA["...)
		dst = append(dst, cfg.SuiteID...)
		dst = append(dst, "]]></SuiteId><AuthCorpId><![CDATA["...)
		dst = append(dst, cfg.CorpID...)
		dst = append(dst, "]]></AuthCorpId><InfoType><![CDATA["...)
		dst = append(dst, infoType...)
		dst = append(dst, "]]></InfoType>"...)
		dst = append(append(append(dst, head...), seq...), tail...)
		dst = append(append(append(dst, "<TimeStamp>"...), ts...), "</TimeStamp></xml>"...)
		return dst
	}
	event := func(ev, head, tail string) []byte {
		dst = append(dst, "<xml><ToUserName><![CDATA["...)
		dst = append(dst, cfg.CorpID...)
		dst = append(dst, "]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>"...)
		dst = append(dst, ts...)
		dst = append(dst, "</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA["...)
		dst = append(dst, ev...)
		dst = append(dst, "]]></Event>"...)
		dst = append(append(append(dst, head...), seq...), tail...)
		return append(dst, "</xml>"...)
	}
	switch cfg.Kind {
	case "conversation_new_message":
		return suite("conversation_new_message", "<Token><![CDATA[loadgen-token-", "]]></Token>")
	case "suite_ticket":
		return suite("suite_ticket", "<SuiteTicket><![CDATA[loadgen-ticket-", "]]></SuiteTicket>")
	case "program_notify":
		return event("program_notify", "<NotifyId><![CDATA[loadgen-notify-", "]]></NotifyId><NotifyScene>1</NotifyScene>")
	case "msgaudit_notify":
		return event("msgaudit_notify", "<AgentID>1000001</AgentID><Seq>", "</Seq>")
	case "unknown":
		return suite("loadgen_unknown", "<Seq>", "</Seq>")
	default:
		return suite("hit_keyword", "<Token><![CDATA[loadgen-token-", "]]></Token>")
	}
}
