// Package app assembles the receiver's service from a configuration and
// runs it: Main opens NATS, the stages and the two HTTP listeners in order,
// routes each stored callback to the stage that handles it (dispatch), keeps
// the corps each app serves in step with the registry, and closes the parts
// in reverse order (Lifecycle). Around that it holds what the service,
// backfill and the operator commands must agree on: the one mapping from
// configuration to the stages' options (options.go), the NATS roles of the
// embedded listener, which corps each app serves (CorpView), the health
// facts' target, and the corp and dead-letter operations the CLI and the
// admin API share.
//
// It leaves the protocol, storage and fetching to the stage packages
// (callback, intake, fetch, publish, wecom, corps, ...), the admin
// listener's handlers to internal/admin, and flags, OS signals and output
// to internal/cli and the commands.
package app
