// Package app assembles the receiver's service from the stages and holds
// what the service, backfill and the operator commands must agree on: the
// one mapping from configuration to the stages' options (options.go), the
// NATS roles of the embedded listener, which corps each app serves
// (CorpView), the health facts' target, and the corp and dead-letter
// operations the CLI and the admin API share. It leaves flags and output
// to internal/cli and HTTP to internal/admin.
package app
