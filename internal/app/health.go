package app

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// IntakeConsumers are the durable consumers of stored callbacks, one per
// group of kinds, so that each group has its own handler slots: a flood of
// hit callbacks that fail (or are dead letters) never delays a suite ticket,
// which every WeCom call of an archive app needs. Within the hit consumer,
// one corp holds at most two records per replica however many callbacks it
// gets (fetch.Handle coalesces them), and a record it cannot use (unknown
// app or corp) is a dead letter at once, so neither takes the slots healthy
// corps need. Kinds that need no action (conversation_new_message,
// msgaudit_notify, unknown) have no consumer: they are only stored. The
// authorization kinds (create_auth, ...) have a consumer of their own: an
// exchange must not wait behind hits, and a hit of a corp being authorized
// is retried until the registry has it.
//
// The hit consumer keeps the name "receiver" of the single consumer of
// earlier versions, which is updated in place and keeps its position.
func IntakeConsumers() []intake.ConsumerOptions {
	return []intake.ConsumerOptions{
		{Durable: intake.DefaultDurable, Kinds: []wecomhit.Kind{wecomhit.KindHitKeyword, wecomhit.KindProgramNotify}},
		{Durable: TicketConsumer, Kinds: []wecomhit.Kind{wecomhit.KindSuiteTicket}, LatestOnly: true, MaxInFlight: 4},
		{Durable: CorpsConsumer, Kinds: []wecomhit.Kind{
			wecomhit.KindCreateAuth, wecomhit.KindChangeAuth, wecomhit.KindCancelAuth, wecomhit.KindResetPermanentCode,
		}, MaxInFlight: 4},
	}
}

// CorpsConsumer is the durable consumer of authorization callbacks.
const CorpsConsumer = "receiver-corps"

// TicketConsumer is the durable consumer of suite tickets.
const TicketConsumer = "receiver-tickets"

// IntakeDurables names the intake consumers whose backlog counts: every
// one serve runs (IntakeConsumers).
func IntakeDurables() []string {
	cs := IntakeConsumers()
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Durable
	}
	return names
}

// StoreLimit is the store limit that fills first: the embedded server's
// account has no limit of its own, so it is nats.max_store_bytes there; an
// external server's account reports its own (0 here).
func StoreLimit(cfg *config.Config) int64 {
	if cfg.NATS.URL == "" {
		return cfg.NATS.MaxStoreBytes
	}
	return 0
}

// HealthTarget is what the health facts are read for: the configured apps
// and corps, the intake consumers and the subject prefix. Registry corps
// come from Target.Corps, which the caller sets.
func HealthTarget(cfg *config.Config) health.Target {
	tg := health.Target{Durables: IntakeDurables(), SubjectPrefix: cfg.NATS.SubjectPrefix, StoreLimit: StoreLimit(cfg)}
	fixed := FixedCorps(cfg)
	for _, a := range cfg.Apps {
		ha := health.App{Name: a.Name, Corps: fixed[a.Name]}
		if a.Mode == config.ModeArchive {
			ha.SuiteID = a.SuiteID
		}
		tg.Apps = append(tg.Apps, ha)
	}
	return tg
}

// ReadStatus gathers the report of `receiver status` and /api/status from
// NATS. corpsOf, when not nil, lists an app's corps (the registry's too).
func ReadStatus(ctx context.Context, js jetstream.JetStream, cfg *config.Config, th health.Thresholds, now time.Time, corpsOf func(string) []string) (health.Report, error) {
	if th.CallbackRoom == 0 {
		// What /readyz asks of the store (Main.callbackRoom): with
		// less, no replica takes callbacks.
		th.CallbackRoom = int64(intake.RecordLimit(cfg.HTTP.MaxBodyBytes))
	}
	tg := HealthTarget(cfg)
	tg.Corps = corpsOf
	return health.Read(ctx, js, tg, th, now)
}

// SampleSecretsWarning is logged at every start, and printed by
// check-config, while allow_sample_secrets is on.
const SampleSecretsWarning = "allow_sample_secrets is true: WeCom's published sample Token and EncodingAESKey are accepted, " +
	"and anyone can sign callbacks for an app that uses them; never let WeCom or the internet reach this receiver"
