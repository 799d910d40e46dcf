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
	m := f.opts.metrics
	var cursors, health jetstream.KeyWatcher
	defer func() {
		for _, w := range []jetstream.KeyWatcher{cursors, health} {
			if w != nil {
				_ = w.Stop()
			}
		}
	}()
	// The newest send time each cursor has passed, for the lag, of the
	// corps served.
	type passed struct {
		app, corp string
		hit       int64
	}
	last := map[string]passed{}
	watch := func(kv jetstream.KeyValue, w *jetstream.KeyWatcher) {
		if m == nil || kv == nil || *w != nil {
			return
		}
		var err error
		if *w, err = kv.WatchAll(ctx); err != nil {
			f.log.Debug().Err(err).Str("bucket", kv.Bucket()).Msg("gauges: watch failed; retried later")
			*w = nil
		}
	}
	updates := func(w jetstream.KeyWatcher) <-chan jetstream.KeyValueEntry {
		if w == nil {
			return nil
		}
		return w.Updates()
	}
	watch(f.cursors, &cursors)
	watch(f.health.kv, &health)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f.health.flushAll(ctx)
			watch(f.cursors, &cursors)
			watch(f.health.kv, &health)
			now := f.opts.now()
			for k, p := range last {
				if !f.serves(p.app, p.corp) {
					delete(last, k)
					continue
				}
				m.lag(p.app, p.corp, p.hit, now)
			}
		case e, ok := <-updates(cursors):
			if !ok {
				cursors = nil // ended: watched again at the next tick
				continue
			}
			if e == nil {
				continue // the initial values are in
			}
			if e.Operation() != jetstream.KeyValuePut {
				delete(last, e.Key())
				continue
			}
			var cur wecomhit.Cursor
			if json.Unmarshal(e.Value(), &cur) != nil || !f.serves(cur.App, cur.CorpID) {
				continue
			}
			last[e.Key()] = passed{cur.App, cur.CorpID, cur.LastHitTime}
			m.lag(cur.App, cur.CorpID, cur.LastHitTime, f.opts.now())
		case e, ok := <-updates(health):
			if !ok {
				health = nil
				continue
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			app, corp, ok := unkey(e.Key())
			var h Health
			if !ok || json.Unmarshal(e.Value(), &h) != nil || !f.serves(app, corp) {
				continue
			}
			m.health(app, corp, h)
		}
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
