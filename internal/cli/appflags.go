package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// credsFlag registers -creds, for the commands that dial a running
// receiver's NATS (app.Dial).
func credsFlag(fs *flag.FlagSet) *string {
	return fs.String("creds", "", "NATS credentials `file` (.creds or nkey seed); without it: nats.credentials_file, or the embedded server's operator.nk on its host")
}

// appFlags are the flags of every command that calls WeCom for an app.
type appFlags struct {
	config, app, corp, creds *string
	out                      Output
}

func addAppFlags(fs *flag.FlagSet, e Env) *appFlags {
	f := &appFlags{}
	f.config = ConfigFlag(fs, e)
	f.creds = credsFlag(fs)
	f.app = fs.String("app", "", "app `name` (apps[].name); may be left out when the configuration has one app")
	f.corp = fs.String("corp", "", "corp `id`; may be left out when the app has one corp")
	OutputVar(fs, &f.out)
	return f
}

// connect resolves the app and corp, then reaches the running receiver's
// NATS and builds the app's client on the shared token stores. done closes
// the connection.
func (f *appFlags) connect(ctx context.Context, e Env, name string) (client *wecom.Client, corp string, done func(), err error) {
	cfg, err := e.config(*f.config)
	if err != nil {
		return nil, "", nil, err
	}
	a, err := pickApp(cfg, *f.app)
	if err != nil {
		return nil, "", nil, err
	}
	log := e.Log()
	b, err := app.Dial(ctx, cfg, name, *f.creds, log)
	if err != nil {
		return nil, "", nil, err
	}
	view, err := app.OpenCorpView(ctx, cfg, b.JetStream(), false, log, nil)
	if err != nil {
		app.CloseBroker(b)
		return nil, "", nil, fmt.Errorf("is the receiver running? %w", err)
	}
	done = func() { view.Close(); app.CloseBroker(b) }
	if corp, err = pickCorp(view.Dir, a.Name, *f.corp); err != nil {
		done()
		return nil, "", nil, err
	}
	client, err = app.NewClient(ctx, a, b.JetStream(), view, log)
	if err != nil {
		done()
		return nil, "", nil, err
	}
	return client, corp, done, nil
}

// pickApp resolves -app: the one app, or the one named.
func pickApp(cfg *config.Config, name string) (*config.App, error) {
	if name == "" {
		if len(cfg.Apps) == 1 {
			return &cfg.Apps[0], nil
		}
		return nil, fmt.Errorf("%w: -app NAME is required (have %v)", ErrUsage, cfg.AppNames())
	}
	a, ok := cfg.App(name)
	if !ok {
		return nil, fmt.Errorf("%w: -app %q is not configured (have %v)", ErrUsage, name, cfg.AppNames())
	}
	return a, nil
}

// pickCorp resolves -corp with the Directory; a corp it does not know is a
// usage error.
func pickCorp(dir *corps.Directory, app, corp string) (string, error) {
	id, err := dir.Resolve(app, corp)
	switch {
	case errors.Is(err, corps.ErrAmbiguous):
		return "", fmt.Errorf("%w: -corp ID is required: app %q has corps %v", ErrUsage, app, listed(dir.Corps(app)))
	case err != nil:
		return "", fmt.Errorf("%w: -corp %q is not a corp of app %q (have %v)", ErrUsage, corp, app, listed(dir.Corps(app)))
	}
	return id, nil
}

// listed shortens a list of corps for a message: with thousands, `receiver
// corps list` is the place to look.
func listed(ids []string) []string {
	const most = 10
	if len(ids) > most {
		return append(ids[:most:most], fmt.Sprintf("... %d more (receiver corps list)", len(ids)-most))
	}
	return ids
}

// requestError is a request the client refused before sending it: a usage
// error (exit 2) that names the field, and the flag it came from.
type requestError struct{ v *wecom.ValidationError }

func (e *requestError) Error() string {
	field := e.v.Field
	if f := flagOf(field); f != "" {
		field += " (" + f + ")"
	}
	return "invalid " + field + ": " + e.v.Rule + "; nothing was sent"
}

func (e *requestError) Is(target error) bool { return target == ErrUsage }
func (e *requestError) Unwrap() error        { return e.v }

// callError makes a validation error a usage error. Anything else is
// WeCom's answer or the way to it (exit 1); an *APIError prints as
// "wecom API: errcode N: errmsg".
func callError(err error) error {
	if v, ok := errors.AsType[*wecom.ValidationError](err); ok {
		return &requestError{v: v}
	}
	return err
}

// fieldFlags maps request fields (JSON paths, by prefix) to the flags that
// fill them.
var fieldFlags = []struct{ field, flag string }{
	{"name", "-name"},
	{"keyword.word_list", "-words"},
	{"keyword", "-words or -semantics"},
	{"semantics", "-semantics"},
	{"applicable_range", "-range or -clear"},
	{"rule_id", "RULE_ID"},
	{"query_word", "QUERY"},
	{"chat_info.id_list", "-between"},
	{"chat_info.msg_type_list", "-types"},
	{"chat_info.sender_list", "-sender"},
	{"chat_info.sender", "-sender"},
	{"start_time", "-from"},
	{"end_time", "-to"},
	{"limit", "-limit"},
}

func flagOf(field string) string {
	for _, f := range fieldFlags {
		rest, ok := strings.CutPrefix(field, f.field)
		if ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
			return f.flag
		}
	}
	return ""
}
