package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// credsCommand prints a role's credentials for the embedded server's
// listener, for handing to a consumer team (or an operator on another host):
// the nkey seed file the running receiver created, read from
// nats.credentials_dir. It needs read access to that directory (the
// receiver's user) and prints nothing else to stdout, so its output can go
// straight into a file.
type credsCommand struct {
	env Env
}

func (c *credsCommand) Run(_ context.Context, args []string) error {
	fs := c.env.FlagSet("creds", "creds consumer|operator -config FILE",
		"Prints the role's nkey seed, which the running receiver wrote to\n"+
			"nats.credentials_dir, and nothing else on stdout, so it can go straight\n"+
			"into a file: receiver creds consumer -config FILE > consumer.nk. Its\n"+
			"output is that file, so there is no -o.")
	path := ConfigFlag(fs, c.env)
	roles := credsRoles()
	if len(args) == 0 || !slices.Contains(roles, args[0]) {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return flag.ErrHelp
		}
		return fmt.Errorf("%w: creds ROLE -config FILE, ROLE one of %v", ErrUsage, roles)
	}
	role := args[0]
	if err := ParseConfigFlags(fs, args[1:], path); err != nil {
		return err
	}
	cfg, err := c.env.LoadConfig(*path)
	if err != nil {
		return err
	}
	if cfg.NATS.URL != "" || cfg.NATS.Listen == "" {
		return fmt.Errorf("%w: only the embedded server's listener (nats.listen, no nats.url) has generated credentials; "+
			"an external NATS server's users are in its own configuration (docs/deploy.md)", ErrUsage)
	}
	file := broker.SeedFile(cfg.NATS.RolesDir(), role)
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s credentials (has the receiver started with nats.listen set? are you its user?): %w", role, err)
	}
	_, err = c.env.Stdout.Write(data)
	wipe(data)
	if err == nil {
		_, _ = fmt.Fprintf(c.env.Stderr, "receiver creds: %s's nkey seed from %s; store it with mode 0600 and use it as -creds, nats --nkey, or nats.NkeyOptionFromSeed\n", role, file)
		if role == app.RoleConsumer {
			_, _ = fmt.Fprintf(c.env.Stderr, "receiver creds: the consumer role's JetStream API is under %s (nats --js-api-prefix, jetstream.NewWithAPIPrefix; docs/events.md)\n", app.ConsumerAPIPrefix)
		}
	}
	return err
}

// credsRoles are the roles creds prints the credentials of.
func credsRoles() []string { return []string{app.RoleConsumer, app.RoleOperator} }

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}
