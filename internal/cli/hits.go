package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// HitReader follows the hit events WECOM_HITS stores, through an ordered
// consumer: a plain subscription would also see the re-publishes of a
// re-fetched page that JetStream drops as duplicates. tail and the demo
// print what it reads.
type HitReader struct {
	it jetstream.MessagesContext
}

// ReadHits starts reading the hit events occ selects from the stream.
func ReadHits(ctx context.Context, js jetstream.StreamManager, occ jetstream.OrderedConsumerConfig) (*HitReader, error) {
	stream, err := js.Stream(ctx, publish.StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s (is the receiver running?): %w", publish.StreamName, err)
	}
	filter := strings.Join(occ.FilterSubjects, ",")
	cons, err := stream.OrderedConsumer(ctx, occ)
	if err != nil {
		return nil, fmt.Errorf("read hits %s: %w", filter, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("read hits %s: %w", filter, err)
	}
	return &HitReader{it: it}, nil
}

// Print writes each event to w as it arrives: a line for people
// (format.Hit, in loc), or the event's JSON (out JSON). It returns how
// many it printed, after limit events (0: no limit), when ctx ends, or on
// Stop; an error only if reading failed otherwise.
func (r *HitReader) Print(ctx context.Context, w io.Writer, out Output, loc *time.Location, limit int) (int, error) {
	stop := context.AfterFunc(ctx, r.it.Stop)
	defer stop()
	n := 0
	for ; limit == 0 || n < limit; n++ {
		msg, err := r.it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return n, nil
			}
			return n, fmt.Errorf("read hits: %w", err)
		}
		if out == JSON {
			_, _ = fmt.Fprintf(w, "%s\n", msg.Data())
			continue
		}
		var ev wecomhit.HitEvent
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			_, _ = fmt.Fprintf(w, "(not a hit event on %s: %v)\n", msg.Subject(), err)
			continue
		}
		_, _ = fmt.Fprintln(w, format.Hit(&ev, loc))
	}
	return n, nil
}

// Stop ends the reading; Print returns.
func (r *HitReader) Stop() { r.it.Stop() }
