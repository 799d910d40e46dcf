package fetch

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
)

// lagRefresh is how often every replica recomputes the cursor lag gauges
// (the lag grows while nothing is fetched) and writes health outcomes not
// yet written.
const lagRefresh = 15 * time.Second

// watchGauges keeps the per-corp gauges of every replica equal, whoever
// fetched last, by watching the cursor and health buckets: one watch per
// bucket, whose traffic follows the writes, instead of reading every
// corp's entries every 15 s (20,000 reads per refresh at 10,000 corps).
// It also flushes the health outcomes not yet written, every lagRefresh.
func (f *Fetcher) watchGauges(ctx context.Context) {
	tick := time.NewTicker(lagRefresh)
	defer tick.Stop()
	g := gauges{f: f, last: map[string]passed{}}
	defer g.stop()
	g.watch(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f.health.flushAll(ctx)
			g.watch(ctx)
			g.refreshLag()
		case e, ok := <-updates(g.cursors):
			if !ok {
				g.cursors = nil // ended: watched again at the next tick
				continue
			}
			g.cursor(e)
		case e, ok := <-updates(g.health):
			if !ok {
				g.health = nil
				continue
			}
			g.healthEntry(e)
		}
	}
}

// gauges is watchGauges' state: its two watches, and the newest send time
// each served corp's cursor has passed, for the lag.
type gauges struct {
	f               *Fetcher
	cursors, health jetstream.KeyWatcher
	last            map[string]passed
}

type passed struct {
	app, corp string
	hit       int64
}

// watch (re)starts the watches that are not running; without metrics there
// is nothing to keep.
func (g *gauges) watch(ctx context.Context) {
	if g.f.opts.metrics == nil {
		return
	}
	start := func(kv jetstream.KeyValue, w *jetstream.KeyWatcher) {
		if kv == nil || *w != nil {
			return
		}
		var err error
		if *w, err = kv.WatchAll(ctx); err != nil {
			g.f.log.Debug().Err(err).Str("bucket", kv.Bucket()).Msg("gauges: watch failed; retried later")
			*w = nil
		}
	}
	start(g.f.cursors, &g.cursors)
	start(g.f.health.kv, &g.health)
}

func (g *gauges) stop() {
	for _, w := range []jetstream.KeyWatcher{g.cursors, g.health} {
		if w != nil {
			_ = w.Stop()
		}
	}
}

func updates(w jetstream.KeyWatcher) <-chan jetstream.KeyValueEntry {
	if w == nil {
		return nil
	}
	return w.Updates()
}

// cursor takes a cursor's change: its lag from now on.
func (g *gauges) cursor(e jetstream.KeyValueEntry) {
	if e == nil {
		return // the initial values are in
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(g.last, e.Key())
		return
	}
	var cur wecomhit.Cursor
	if json.Unmarshal(e.Value(), &cur) != nil || !g.f.serves(cur.App, cur.CorpID) {
		return
	}
	g.last[e.Key()] = passed{cur.App, cur.CorpID, cur.LastHitTime}
	g.f.opts.metrics.lag(cur.App, cur.CorpID, cur.LastHitTime, g.f.opts.now())
}

// healthEntry takes a health entry's change.
func (g *gauges) healthEntry(e jetstream.KeyValueEntry) {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return
	}
	app, corp, ok := unkey(e.Key())
	var h Health
	if !ok || json.Unmarshal(e.Value(), &h) != nil || !g.f.serves(app, corp) {
		return
	}
	g.f.opts.metrics.health(app, corp, h)
}

// refreshLag recomputes every served corp's lag: it grows while nothing
// is fetched.
func (g *gauges) refreshLag() {
	now := g.f.opts.now()
	for k, p := range g.last {
		if !g.f.serves(p.app, p.corp) {
			delete(g.last, k)
			continue
		}
		g.f.opts.metrics.lag(p.app, p.corp, p.hit, now)
	}
}

// serves reports whether app serves corp now: a gauge of a corp that has
// gone (its series deleted by Forget) must not come back.
func (f *Fetcher) serves(app, corp string) bool {
	if _, ok := f.apps[app]; !ok {
		return false
	}
	_, err := f.opts.corps.Resolve(app, corp)
	return err == nil
}

// unkey is key's inverse.
func unkey(k string) (app, corp string, ok bool) {
	a, c, found := strings.Cut(k, ".")
	if !found {
		return "", "", false
	}
	app, ok1 := unescapeKey(a)
	corp, ok2 := unescapeKey(c)
	return app, corp, ok1 && ok2
}

func unescapeKey(s string) (string, bool) {
	if s == "=" {
		return "", true
	}
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 > len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}
