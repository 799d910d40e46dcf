package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Lifecycle is a teardown written down as the parts it undoes are opened:
// each part, once open, registers the cleanup that stops it, and Close runs
// the cleanups last-registered first, as deferred calls would run, though
// opening (Main.Open, the demo's start) and closing are separate calls. So
// a failed Open undoes exactly what it had opened, and the shutdown order
// is the opening order reversed, stated once, where each part opens. A part
// that must stop after others opened later (the admin listener) registers
// early. The zero value is ready to use, logging nowhere.
type Lifecycle struct {
	// Log gets a warning for each cleanup that fails, and a debug line
	// for each one done.
	Log zerolog.Logger

	mu    sync.Mutex
	steps []cleanup
	err   error // the errors of every close so far
}

// cleanup is one named step of a teardown. The name is what an operator
// reads in the log when the step fails, and prefixes its error.
type cleanup struct {
	name string
	stop func(ctx context.Context) error
}

// OnClose registers stop under name, to run at close before every cleanup
// registered earlier. stop should respect ctx: Close passes every step the
// same one, whose deadline bounds the whole teardown.
func (l *Lifecycle) OnClose(name string, stop func(ctx context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = append(l.steps, cleanup{name: name, stop: stop})
}

// Close runs the registered cleanups in reverse order of registration, each
// once, and returns their errors joined, each prefixed with its step's
// name. A failing step is logged with its name and does not stop the steps
// after it. A step that ctx's end interrupts still returns, so the rest
// run. Close is idempotent: a later call runs only what was registered
// since (normally nothing) and returns every error so far.
func (l *Lifecycle) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	steps := l.steps
	l.steps = nil
	for _, c := range slices.Backward(steps) {
		start := time.Now()
		if err := c.stop(ctx); err != nil {
			l.Log.Warn().Err(err).Str("cleanup", c.name).Msg("cleanup failed")
			l.err = errors.Join(l.err, fmt.Errorf("%s: %w", c.name, err))
			continue
		}
		l.Log.Debug().Str("cleanup", c.name).Dur("took", time.Since(start)).Msg("cleanup done")
	}
	return l.err
}

// CloseListener is the cleanup of a listener an http.Server may have
// closed already: the server's Shutdown closes it when it served; this
// closes it when it never did (an Open that failed before serving).
func CloseListener(l net.Listener) func(context.Context) error {
	return func(context.Context) error {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}
