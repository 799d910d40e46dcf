// Package consumertest runs an example consumer (examples/) as an OS
// process against a real NATS server holding real events, published by the
// receiver's publisher, and checks what docs/events.md promises such a
// consumer can do: handle each hit once although JetStream delivers it more
// than once, ack it, keep its position across a restart, and stop cleanly on
// SIGTERM.
//
// It does not know how a consumer is written; it needs only a command,
// built by the caller for a server URL, a durable name and a file, that
// appends one line per handled hit to the file, starting with the event's
// Nats-Msg-Id and a tab.
package consumertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

const (
	prefix = "wecom"
	corpID = "wwCorpABC123"
	// dupWindow is the stream's de-duplication window here: short, so the
	// test can store an event a second time, as a re-publish after the
	// window (or a redelivery) would give a consumer.
	dupWindow = 300 * time.Millisecond
	// waitFor bounds each wait for the consumer process.
	waitFor = 30 * time.Second
)

// Start starts the consumer under test as a process reading natsURL with
// the durable consumer durable and writing handled hits to out.
type Start func(t *testing.T, natsURL, durable, out string) *exec.Cmd

// Scenario runs the scenario: events published; the consumer handles each
// once; the same events stored again are acked but not handled again; SIGTERM
// stops it with exit code 0; new events published while it is away are the
// only ones the restarted consumer handles.
func Scenario(t *testing.T, start Start, durable string) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	p, err := publish.New(js, prefix, publish.WithDuplicateWindow(dupWindow))
	require.NoError(t, err)
	setupCtx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	require.NoError(t, p.Setup(setupCtx))
	out := t.TempDir() + "/hits.tsv"

	first, firstIDs := Messages("a", 30)
	publishPage(t, p, first)
	c := run(t, start, srv.ClientURL(), durable, out)
	WaitHandled(t, c, out, firstIDs)

	// The same events again, stored once the de-duplication window has
	// passed: the consumer acks them and handles none twice.
	natstest.WaitFor(t, waitFor, func() error {
		publishPage(t, p, first)
		if n := streamMsgs(t, js); n < uint64(2*len(firstIDs)) {
			return fmt.Errorf("%d of %d events stored again", n-uint64(len(firstIDs)), len(firstIDs))
		}
		return nil
	})
	waitAcked(t, js, durable)
	RequireHandled(t, out, firstIDs)
	c.Stop(t)

	// Away: new events. Back: only those are handled.
	second, secondIDs := Messages("b", 20)
	publishPage(t, p, second)
	c = run(t, start, srv.ClientURL(), durable, out)
	all := append(append([]string(nil), firstIDs...), secondIDs...)
	WaitHandled(t, c, out, all)
	waitAcked(t, js, durable)
	RequireHandled(t, out, all)
	c.Stop(t)
}

// Messages returns n hit messages as WeCom would return them, ids starting
// with tag, and the Nats-Msg-Ids of their events. Every third message hits
// two rules, so there are more events than messages.
func Messages(tag string, n int) ([]wecomhit.HitMessage, []string) {
	msgs := make([]wecomhit.HitMessage, n)
	var ids []string
	for i := range msgs {
		m := wecomhit.HitMessage{MsgID: fmt.Sprintf("%s-%d_1717000000", tag, i),
			HitRules: []wecomhit.HitRule{{RuleID: "rule-7", SemanticsList: []int{2}}},
			Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "woEmployee"},
				ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmCustomer"}}, SendTime: 1717000000 + int64(i), MsgType: 1}}
		if i%3 == 0 {
			m.HitRules = append(m.HitRules, wecomhit.HitRule{RuleID: "rule-9", HasHitKeyword: true})
		}
		for _, r := range m.HitRules {
			ids = append(ids, publish.MsgID(corpID, m.MsgID, r.RuleID))
		}
		msgs[i] = m
	}
	return msgs, ids
}

// ioTimeout bounds one call to NATS.
const ioTimeout = 10 * time.Second

func publishPage(t *testing.T, p *publish.Publisher, msgs []wecomhit.HitMessage) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	_, err := p.Publish(ctx, &wecomhit.HitPage{App: "archive", CorpID: corpID, Source: wecomhit.SourceCallback,
		UsedHitToken: true, FetchedAt: time.Now(), Messages: msgs})
	require.NoError(t, err)
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// Proc is a running consumer process.
type Proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan struct{} // closed once the process has exited; then err is set
	err    error
}

// Write collects the process's stderr, for failure messages.
func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.Write(b)
}

func (p *Proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func run(t *testing.T, start Start, url, durable, out string) *Proc {
	t.Helper()
	return Run(t, start(t, url, durable, out))
}

// Run starts cmd, collecting its stderr, and kills it in t.Cleanup if it
// is still running then.
func Run(t *testing.T, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	p.cmd.Stderr = p
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// Stop sends SIGTERM and expects a clean exit.
func (p *Proc) Stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		require.NoError(t, p.err, "the consumer must exit 0 on SIGTERM; its stderr:\n%s", p.log())
	case <-time.After(waitFor):
		t.Fatalf("the consumer did not stop within %s of SIGTERM; its stderr:\n%s", waitFor, p.log())
	}
}

// lines reads the handled ids.
func lines(t *testing.T, out string) []string {
	t.Helper()
	data, err := os.ReadFile(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var ids []string
	for line := range strings.Lines(string(data)) {
		id, _, ok := strings.Cut(line, "\t")
		require.True(t, ok, "a line is <id>\\t…: %q", line)
		ids = append(ids, id)
	}
	return ids
}

// WaitHandled waits until out lists as many hits as want, failing early if
// the process exits.
func WaitHandled(t *testing.T, p *Proc, out string, want []string) {
	t.Helper()
	natstest.WaitFor(t, waitFor, func() error {
		select {
		case <-p.exited:
			t.Fatalf("the consumer exited (%v); its stderr:\n%s", p.err, p.log())
		default:
		}
		if n := len(lines(t, out)); n < len(want) {
			return fmt.Errorf("%d of %d hits handled; stderr:\n%s", n, len(want), p.log())
		}
		return nil
	})
}

// waitAcked waits until the durable consumer has been delivered everything
// in the stream and has nothing awaiting an ack.
func waitAcked(t *testing.T, js jetstream.JetStream, durable string) {
	t.Helper()
	natstest.WaitFor(t, waitFor, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		c, err := js.Consumer(ctx, publish.StreamName, durable)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("%d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// RequireHandled checks that exactly the ids of want were handled, each once.
func RequireHandled(t *testing.T, out string, want []string) {
	t.Helper()
	got := lines(t, out)
	count := map[string]int{}
	for _, id := range got {
		count[id]++
	}
	for _, id := range want {
		require.Equal(t, 1, count[id], "hit %s handled once", id)
	}
	require.Len(t, got, len(want), "no hit handled twice, none that was not published")
}
