package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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

// dialOption adjusts how dialNATS connects.
type dialOption func(*broker.Options)

// withCreds logs in with file (a .creds or nkey seed file, the -creds flag)
// instead of the credentials the configuration points to; "" changes
// nothing.
func withCreds(file string) dialOption {
	return func(o *broker.Options) {
		if file != "" {
			o.CredentialsFile = file
		}
	}
}

// credsFlag registers -creds, for the commands that dial a running
// receiver's NATS.
func credsFlag(fs *flag.FlagSet) *string {
	return fs.String("creds", "", "NATS credentials `file` (.creds or nkey seed); without it: nats.credentials_file, or the embedded server's operator.nk on its host")
}

// dialNATS connects an operator command (backfill, rules, tail, status…)
// to the NATS of a running receiver: nats.url, or else the embedded
// server's nats.listen. It never opens an embedded store, which the running
// receiver owns.
//
// Credentials: -creds (withCreds) if given; else nats.credentials_file for
// nats.url; else, for nats.listen, the operator seed the embedded server
// wrote in nats.credentials_dir: on the receiver's host, as the receiver's
// user, the commands need no flag. Replies come back on the operator's own
// inbox prefix, which the consumer role cannot subscribe to.
func dialNATS(ctx context.Context, cfg *config.Config, name string, log zerolog.Logger, opts ...dialOption) (*broker.Broker, error) {
	o := broker.Options{
		URLs: cfg.NATS.URLs(), CredentialsFile: cfg.NATS.CredentialsFile, TLSCAFile: cfg.NATS.TLSCAFile,
		TLSCertFile: cfg.NATS.TLSCertFile, TLSKeyFile: cfg.NATS.TLSKeyFile,
		ConnectTimeout: cfg.NATS.ConnectTimeout, Name: name, InboxPrefix: operatorInboxPrefix,
	}
	if len(o.URLs) == 0 {
		if cfg.NATS.Listen == "" {
			return nil, errNoNATS
		}
		o.URLs = []string{"nats://" + cfg.NATS.Listen}
		o.CredentialsFile = broker.SeedFile(cfg.NATS.RolesDir(), roleOperator)
	}
	for _, opt := range opts {
		opt(&o)
	}
	b, err := broker.Open(ctx, o, log)
	if errors.Is(err, broker.ErrCredentials) {
		return nil, fmt.Errorf("%w (run this as the receiver's user on its host, or pass -creds FILE)", err)
	}
	return b, err
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
func newClient(ctx context.Context, app *config.App, js jetstream.JetStream, log zerolog.Logger, opts ...wecom.Option) (*wecom.Client, error) {
	stores, err := wecom.BindStores(ctx, js)
	if err != nil {
		return nil, err
	}
	return wecom.New(*app, stores, append([]wecom.Option{wecom.WithLogger(log)}, opts...)...)
}
