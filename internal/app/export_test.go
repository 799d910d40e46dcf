package app

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/admin"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// What the tests of package app_test (the service run whole, often with
// the receiver's commands, which import this package) read of a Main's
// insides.

func (m *Main) Cfg() *config.Config               { return m.cfg }
func (m *Main) Clients() map[string]*wecom.Client { return m.clients }
func (m *Main) Stores() *wecom.Stores             { return m.stores }
func (m *Main) Publisher() *publish.Publisher     { return m.publisher }
func (m *Main) Fetcher() *fetch.Fetcher           { return m.fetcher }
func (m *Main) Intake() *intake.Store             { return m.intake }
func (m *Main) CorpView() *CorpView               { return m.corpView }
func (m *Main) Draining() *atomic.Bool            { return &m.draining }
func (m *Main) RulesWarmed() <-chan struct{}      { return m.rulesWarmed }
func (m *Main) AdminHandler() *admin.Handler      { return m.adminHandler }
func (m *Main) AdminServer() *http.Server         { return m.adminServer }
func (m *Main) Dispatch(ctx context.Context, cb *wecomhit.Callback) error {
	return m.dispatch(ctx, cb)
}

var (
	ErrDraining = errDraining
	NewServer   = newServer
)
