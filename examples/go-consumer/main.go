// Command go-consumer is an example consumer of hit events (docs/events.md): a
// durable JetStream consumer on WECOM_HITS with explicit acks that handles each
// hit once, keyed on its dedup id, and stops cleanly on SIGINT or SIGTERM. It
// appends a line per hit to a file, which is also its record of what it handled.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server URL")
	nkey := flag.String("nkey", "", "the consumer role's seed file (receiver creds consumer), where the server asks for one")
	apiPrefix := flag.String("js-api-prefix", "$JS.hits.API",
		"JetStream API prefix: the consumer role's ($JS.hits.API, docs/events.md), or $JS.API where consumers share the receiver's account")
	durable := flag.String("durable", "go-example", "durable consumer name: the position survives restarts")
	out := flag.String("out", "hits.tsv", "file of handled hits, one line each: id, source, rule name")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *nkey, *apiPrefix, *durable, *out); err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer:", err)
		os.Exit(1)
	}
}

// run consumes until ctx ends; what is not acked then is delivered again later.
func run(ctx context.Context, url, nkey, apiPrefix, durable, path string) error {
	data, err := os.ReadFile(path) // the hits handled by earlier runs
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	handled := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		handled[strings.SplitN(line, "\t", 2)[0]] = true
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var login []nats.Option
	if nkey != "" {
		seed, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return err
		}
		login = append(login, seed)
	}
	nc, err := nats.Connect(url, login...)
	if err != nil {
		return err
	}
	defer nc.Close()
	// The consumer role reaches the receiver's JetStream API under a prefix
	// of its own account (docs/events.md).
	js, err := jetstream.NewWithAPIPrefix(nc, apiPrefix)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "WECOM_HITS", jetstream.ConsumerConfig{
		Durable: durable, FilterSubject: "wecom.hit.>", // <prefix>.hit.>
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { // one message at a time: handled needs no lock
		id := m.Headers().Get("Nats-Msg-Id") // <corp_id>:<msgid>:<rule_id>, never empty
		if handled[id] {
			_ = m.Ack() // delivered again (a redelivery, a re-publish): done already
			return
		}
		var ev wecomhit.HitEvent
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			_ = m.Term() // not a hit event: never deliver it again
			return
		}
		if _, err := fmt.Fprintf(f, "%s\t%s\t%s\n", id, ev.Source, ev.RuleName); err != nil {
			_ = m.Nak() // not handled: let JetStream deliver it again
			return
		}
		handled[id] = true
		_ = m.Ack()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { fmt.Fprintln(os.Stderr, "go-consumer:", err) }))
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Drain() // stop pulling; the message in hand is finished and acked
	<-cc.Closed()
	return errors.Join(nc.Flush(), f.Sync()) // the acks reach the server
}
