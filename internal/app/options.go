package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// This file is the one place where the configuration becomes the options
// of the stages: the service (serve), backfill and the operator commands
// all build them here, so a new key reaches every one of them. What only a
// running service adds (metrics, its clock, the dead-letter stream it
// opened) the caller sets on the result.

// BrokerOptions are the service's NATS options: an external cluster
// (nats.url), or the embedded server with its store, its TCP listener and
// the roles of that listener.
func BrokerOptions(cfg *config.Config) broker.Options {
	n := cfg.NATS
	return broker.Options{
		URLs:            n.URLs(),
		StoreDir:        n.StoreDir,
		Listen:          n.Listen,
		CredentialsDir:  n.RolesDir(),
		Roles:           NATSRoles(n.SubjectPrefix),
		InboxPrefix:     ReceiverInboxPrefix,
		SyncAlways:      n.SyncAlways,
		CredentialsFile: n.CredentialsFile,
		TLSCAFile:       n.TLSCAFile,
		TLSCertFile:     n.TLSCertFile,
		TLSKeyFile:      n.TLSKeyFile,
		ConnectTimeout:  n.ConnectTimeout,
		MaxStore:        n.MaxStoreBytes,

		PingInterval:        n.PingInterval,
		MaxPingsOutstanding: n.MaxPingsOutstanding,
	}
}

// ErrNoNATS: a command that works against a running receiver found no way
// to reach its NATS.
var ErrNoNATS = errors.New("this command connects to the running receiver's NATS: set nats.url, or nats.listen for the embedded server")

// OperatorBrokerOptions are the NATS options of an operator command
// (backfill, rules, tail, status…), which reaches a running receiver's
// NATS: nats.url, or else the embedded server's nats.listen. They never
// open an embedded store, which the running receiver owns.
//
// Credentials: creds (the -creds flag) if not ""; else
// nats.credentials_file for nats.url; else, for nats.listen, the operator
// seed the embedded server wrote in nats.credentials_dir: on the
// receiver's host, as the receiver's user, the commands need no flag.
// Replies come back on the operator's own inbox prefix, which the consumer
// role cannot subscribe to.
func OperatorBrokerOptions(cfg *config.Config, name, creds string) (broker.Options, error) {
	n := cfg.NATS
	o := broker.Options{
		URLs: n.URLs(), CredentialsFile: n.CredentialsFile, TLSCAFile: n.TLSCAFile,
		TLSCertFile: n.TLSCertFile, TLSKeyFile: n.TLSKeyFile,
		ConnectTimeout: n.ConnectTimeout, Name: name, InboxPrefix: OperatorInboxPrefix,
	}
	if len(o.URLs) == 0 {
		if n.Listen == "" {
			return broker.Options{}, ErrNoNATS
		}
		o.URLs = []string{"nats://" + n.Listen}
		o.CredentialsFile = broker.SeedFile(n.RolesDir(), RoleOperator)
	}
	if creds != "" {
		o.CredentialsFile = creds
	}
	return o, nil
}

// Dial connects an operator command to a running receiver's NATS
// (OperatorBrokerOptions); name is the connection's name, creds the -creds
// file or "".
func Dial(ctx context.Context, cfg *config.Config, name, creds string, log zerolog.Logger) (*broker.Broker, error) {
	o, err := OperatorBrokerOptions(cfg, name, creds)
	if err != nil {
		return nil, err
	}
	b, err := broker.Open(ctx, o, log)
	if errors.Is(err, broker.ErrCredentials) {
		return nil, fmt.Errorf("%w (run this as the receiver's user on its host, or pass -creds FILE)", err)
	}
	return b, err
}

// CloseBroker drains a command's connection, bounded.
func CloseBroker(b *broker.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.Close(ctx)
}

// PublishOptions are the hit and corp-event streams' options. The caller
// appends what it has besides: rule names, logger, metrics, dead letters.
func PublishOptions(cfg *config.Config) []publish.Option {
	n, fc := cfg.NATS, cfg.Fetch
	return []publish.Option{
		publish.WithReplicas(n.Replicas), publish.WithMaxAge(fc.HitsMaxAge),
		publish.WithDuplicateWindow(fc.HitsDuplicateWindow),
		publish.WithMaxBytes(n.HitsMaxBytes), publish.WithMaxMsgSize(n.HitsMaxMsgSize),
		publish.WithDiscardOld(n.HitsDiscard == config.DiscardOld),
		publish.WithCorpMaxBytes(n.CorpEventsMaxBytes), publish.WithFastBatches(n.HitBatching),
	}
}

// FetchOptions are the fetcher's options. The caller adds its logger, and
// the metrics, clock and corps when it has them.
func FetchOptions(cfg *config.Config) []fetch.Option {
	n, fc := cfg.NATS, cfg.Fetch
	return []fetch.Option{
		fetch.WithPageSize(fc.PageSize), fetch.WithLeaseTTL(fc.LeaseTTL), fetch.WithPollInterval(fc.PollInterval),
		fetch.WithTokenlessPerMinute(fc.TokenlessPerMinute), fetch.WithTokenlessBudget(fc.TokenlessBudgetPerMinute),
		fetch.WithWorkers(fc.Workers), fetch.WithReplicas(n.Replicas), fetch.WithKVMaxBytes(n.KVMaxBytes),
	}
}

// StoreConfig is the WeCom clients' buckets (tokens, locks, suite
// tickets) as the service creates them.
func StoreConfig(cfg *config.Config) wecom.StoreConfig {
	return wecom.StoreConfig{Replicas: cfg.NATS.Replicas, MaxBytes: cfg.NATS.KVMaxBytes}
}

// DeadLetterOptions are the dead-letter stream's options.
func DeadLetterOptions(cfg *config.Config) []deadletter.Option {
	n := cfg.NATS
	return []deadletter.Option{
		deadletter.WithReplicas(n.Replicas), deadletter.WithMaxAge(n.DeadLetterMaxAge),
		deadletter.WithMaxBytes(n.DeadLettersMaxBytes),
	}
}

// IntakeOptions are the callback stream's options. The caller appends its
// logger and metrics. ownsStore is true only for the process that runs the
// embedded server (the receiver; broker.Embedded): the one writer of
// callback ids to its store, which keeps them itself.
func IntakeOptions(cfg *config.Config, ownsStore bool) []intake.Option {
	n := cfg.NATS
	return []intake.Option{
		intake.WithReplicas(n.Replicas), intake.WithMaxAge(n.CallbackMaxAge),
		intake.WithDuplicateWindow(n.DuplicateWindow), intake.WithMaxBytes(n.CallbacksMaxBytes),
		intake.WithMaxMsgSize(intake.RecordLimit(cfg.HTTP.MaxBodyBytes)), intake.WithBatching(n.CallbackBatching),
		// The embedded server's store has one receiver, the only writer
		// of callback ids: it keeps them itself, where the collector need
		// not trace them (intake/dedup.go). Receivers sharing an
		// external NATS leave them to the server, which all of them see,
		// and so does any other process (an operator command) on the
		// embedded server's listener.
		intake.WithLocalDedup(ownsStore),
	}
}

// NewClient builds an operator command's WeCom client for app on the
// running receivers' token stores, so a command reuses their tokens. It
// binds the buckets without changing them: a command's config must not
// reconfigure a cluster. view gives the registry's permanent codes.
func NewClient(ctx context.Context, app *config.App, js jetstream.JetStream, view *CorpView, log zerolog.Logger) (*wecom.Client, error) {
	stores, err := wecom.BindStores(ctx, js)
	if err != nil {
		return nil, err
	}
	opts := append([]wecom.Option{wecom.WithLogger(log)}, view.ClientOptions(*app)...)
	return wecom.New(WeComApp(*app), stores, opts...)
}

// WeComApp is what the WeCom client needs of a configured app: its mode,
// addresses and API credentials, not the callback's token and key.
func WeComApp(a config.App) wecom.App {
	corps := make([]wecom.Corp, len(a.Corps))
	for i, c := range a.Corps {
		corps[i] = wecom.Corp{CorpID: c.CorpID, PermanentCode: c.PermanentCode}
	}
	return wecom.App{
		Name: a.Name, Mode: a.Mode, APIBaseURL: a.APIBaseURL,
		CorpID: a.CorpID, CorpSecret: a.CorpSecret, ProgramID: a.ProgramID,
		Abilities: a.Abilities, WrapAbilityIO: a.WrapAbilityIO,
		SuiteID: a.SuiteID, SuiteSecret: a.SuiteSecret, Corps: corps,
	}
}

// RuleLister lists a corp's rules with get_rule_list: a rulecache.Lister,
// for the background warm-up of rule names.
type RuleLister struct{ Client *wecom.Client }

// ListRuleNames calls set for each of corp's rules.
func (r RuleLister) ListRuleNames(ctx context.Context, corp string, set func(ruleID, name string)) error {
	for rule, err := range r.Client.ListRules(ctx, corp, 100) {
		if err != nil {
			return err
		}
		set(rule.RuleID, rule.Name)
	}
	return nil
}

// RuleNamer reads a rule's name with get_rule_detail: a rulecache.Getter.
type RuleNamer struct{ Client *wecom.Client }

// RuleName implements rulecache.Getter.
func (r RuleNamer) RuleName(ctx context.Context, corp, ruleID string) (string, error) {
	d, err := r.Client.GetRule(ctx, corp, ruleID)
	if err != nil {
		return "", err
	}
	return d.Name, nil
}
