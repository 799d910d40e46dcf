package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCeiling measures what the hit pipeline is compared with: an
// embedded nats-server in this process, a file-store stream with a
// duplicate window, and n messages of 1 KiB published asynchronously,
// each with its own Nats-Msg-Id, up to 4096 unacknowledged. It returns
// acknowledged messages per second.
func natsCeiling(ctx context.Context, dir string, n int) (float64, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: dir, NoSigs: true, DontListen: true})
	if err != nil {
		return 0, err
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return 0, fmt.Errorf("nats server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CEILING", Subjects: []string{"ceiling.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
		return 0, err
	}
	data := make([]byte, 1024)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	start := time.Now()
	for i := range n {
		msg := &nats.Msg{Subject: "ceiling.hit.corp", Data: data}
		// At the cap a publish waits for acks; on a busy machine longer
		// than the default 200 ms, which is waiting, not failure.
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID("ceiling-"+strconv.Itoa(i)), jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("acks still pending after 2m")
	}
	elapsed := time.Since(start)
	s, err := js.Stream(ctx, "CEILING")
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs != uint64(n) {
		return 0, fmt.Errorf("stream holds %d of %d", info.State.Msgs, n)
	}
	return float64(n) / elapsed.Seconds(), nil
}
