package main

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// errNoNATS: a command that works against a running receiver found no way
// to reach its NATS.
var errNoNATS = errors.New("this command connects to the running receiver's NATS: set nats.url, or nats.listen for the embedded server")

// dialNATS connects an operator command (backfill, rules, tail, status…)
// to the NATS of a running receiver: nats.url, or else the embedded
// server's nats.listen. It never opens an embedded store, which the running
// receiver owns.
func dialNATS(ctx context.Context, cfg *config.Config, name string, log zerolog.Logger) (*broker.Broker, error) {
	urls := cfg.NATS.URLs()
	if len(urls) == 0 {
		if cfg.NATS.Listen == "" {
			return nil, errNoNATS
		}
		urls = []string{"nats://" + cfg.NATS.Listen}
	}
	return broker.Open(ctx, broker.Options{
		URLs: urls, CredentialsFile: cfg.NATS.CredentialsFile, TLSCAFile: cfg.NATS.TLSCAFile,
		TLSCertFile: cfg.NATS.TLSCertFile, TLSKeyFile: cfg.NATS.TLSKeyFile,
		ConnectTimeout: cfg.NATS.ConnectTimeout, Name: name,
	}, log)
}

// closeBroker drains a command's connection, bounded.
func closeBroker(b *broker.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.Close(ctx)
}

// newClient builds app's WeCom client on the running receivers' token
// stores, so a command reuses their tokens. It binds the buckets without
// changing them: a command's config must not reconfigure a cluster.
func newClient(ctx context.Context, app *config.App, js jetstream.JetStream, log zerolog.Logger) (*wecom.Client, error) {
	stores, err := wecom.BindStores(ctx, js)
	if err != nil {
		return nil, err
	}
	return wecom.New(*app, stores, wecom.WithLogger(log))
}
