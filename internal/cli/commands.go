package cli

// Commands is the receiver's command table, in the order the overview
// lists them: first (the commands that run the service, which their own
// packages define), then the operator commands, version and help.
func Commands(first ...Spec) []Spec {
	return append(first, []Spec{
		{Name: "serve", Synopsis: "serve -config FILE",
			Summary: "run the service",
			Env:     []EnvVar{EnvConfig, EnvColour},
			New:     func(e Env) Command { return &serveCommand{env: e} }},
		{Name: "check-config", Synopsis: "check-config -config FILE [-o json]",
			Summary: "validate a configuration: every problem, with its key path and line",
			Env:     []EnvVar{EnvConfig},
			New:     func(e Env) Command { return &checkConfigCommand{env: e} }},
		{Name: "backfill", Synopsis: "backfill -config FILE [-app NAME] [-corp ID] -since TIME [-o json]",
			Summary: "re-read hits from TIME (RFC 3339 or a duration ago: 6h, 5d), publish what is missing",
			Env:     []EnvVar{EnvConfig},
			New:     func(e Env) Command { return &backfillCommand{env: e} }},
		{Name: "rules", Synopsis: "rules list|get|create|update|delete -config FILE [-app NAME] [-o json]",
			Summary: "manage an app's keyword rules in WeCom",
			Env:     []EnvVar{EnvConfig},
			Subs:    []string{"list", "get", "create", "update", "delete"},
			New:     func(e Env) Command { return &rulesCommand{env: e} }},
		{Name: "search", Synopsis: "search QUERY -config FILE [-app NAME] [filters] [-o json]",
			Summary: "find archived messages by a word, every page; prints their msgids",
			Env:     []EnvVar{EnvConfig},
			New:     func(e Env) Command { return &searchCommand{env: e} }},
		{Name: "tail", Synopsis: "tail -config FILE [-since TIME] [-subject S] [-o json]",
			Summary: "print hit events as they are published",
			Env:     []EnvVar{EnvConfig},
			New:     func(e Env) Command { return &tailCommand{env: e} }},
		{Name: "status", Synopsis: "status -config FILE [-o json] [thresholds]",
			Summary: "a verdict (OK, DEGRADED, STALLED) and the facts behind it: backlog,\n" +
				"dead letters, storage, suite tickets, each app and corp's fetches;\n" +
				"exit 0 OK, 3 needs attention, 4 cannot tell (NATS unreachable)",
			Env: []EnvVar{EnvConfig},
			New: func(e Env) Command { return &statusCommand{env: e} }},
		{Name: "creds", Synopsis: "creds consumer|operator -config FILE",
			Summary: "print a role's credentials for the embedded NATS listener (nkey seed)",
			Env:     []EnvVar{EnvConfig},
			Subs:    credsRoles(),
			New:     func(e Env) Command { return &credsCommand{env: e} }},
		{Name: "dlq", Synopsis: "dlq list|replay -config FILE [filters] [-o json]",
			Summary: "list dead letters; replay callback dead letters (-seq N,... or -all)",
			Env:     []EnvVar{EnvConfig},
			Subs:    []string{"list", "replay"},
			New:     func(e Env) Command { return &dlqCommand{env: e} }},
		{Name: "corps", Synopsis: "corps list|get|remove|rekey -config FILE [-app NAME] [-corp ID] [-o json]",
			Summary: "the corps each app serves (docs/corps.md); remove stops one and deletes\n" +
				"its data; rekey re-seals permanent codes under corps.current_key",
			Env:  []EnvVar{EnvConfig},
			Subs: []string{"list", "get", "remove", "rekey"},
			New:  func(e Env) Command { return &corpsCommand{env: e} }},
		{Name: "version", Synopsis: "version [-o json]",
			Summary: "print the version and VCS revision (also: receiver --version)",
			New:     func(e Env) Command { return &versionCommand{env: e} }},
		{Name: "help", Synopsis: "help [COMMAND [SUBCOMMAND]]",
			Summary: "this overview, or a command's flags (same as COMMAND -h)",
			New:     func(e Env) Command { return &helpCommand{env: e} }},
	}...)
}
