package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// roomCacheTTL is how long Ready trusts one reading of the storage:
// readiness probes come every few seconds from every load balancer, and
// need not each cost NATS four requests.
const roomCacheTTL = 2 * time.Second

// roomStale is how long a good reading stands in for readings that fail:
// a storage reading is a few NATS requests, which a busy machine can time
// out while the store is fine. Readiness should not flap on that (a NATS
// that is down fails Ready through the broker, not through this), and
// storage does not fill in seconds.
const roomStale = 30 * time.Second

// roomCache holds the result of the last storage reading for Ready, and
// the last good reading.
type roomCache struct {
	mu     sync.Mutex
	at     time.Time
	err    error
	good   health.Storage
	goodAt time.Time
	// read takes a reading; nil means health.ReadStorage (tests set it).
	read func(ctx context.Context) (health.Storage, error)
}

// callbackRoom returns nil when WECOM_CALLBACKS and the store can take one
// more callback of the largest size: the same reading and the same rule
// (health.CallbackRoom) as the status verdict's storage_full.
func (m *Main) callbackRoom(ctx context.Context) error {
	c := &m.room
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > roomCacheTTL {
		// A failed read is kept for the TTL too.
		read := c.read
		if read == nil {
			read = func(ctx context.Context) (health.Storage, error) {
				return health.ReadStorage(ctx, m.broker.JetStream(), StoreLimit(m.cfg))
			}
		}
		var st health.Storage
		st, c.err = read(ctx)
		c.at = time.Now()
		if c.err == nil {
			c.good, c.goodAt = st, c.at
		}
	}
	if c.err != nil && (c.goodAt.IsZero() || time.Since(c.goodAt) > roomStale) {
		return c.err
	}
	return health.CallbackRoom(c.good, int64(intake.RecordLimit(m.cfg.HTTP.MaxBodyBytes)))
}

// readyGauge is wecom_receiver_ready: 1 while Ready passes, read at each
// scrape. A replica whose /readyz fails gets no callbacks from the load
// balancer, so it answers no 503 either; and when every replica fails
// alike (a full store), only this gauge tells the alert.
func (m *Main) readyGauge() prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wecom_receiver_ready",
		Help: "1 while this replica is ready (/readyz): it can store callbacks; 0 otherwise.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if m.Ready(ctx) != nil {
			return 0
		}
		return 1
	})
}
