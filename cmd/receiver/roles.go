package main

import (
	"github.com/nats-io/nats-server/v2/server"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// The NATS roles of the embedded server's TCP listener (broker, auth.go),
// and of the users an external cluster should have
// (configs/nats-cluster/*.conf carries the same permissions for the
// default prefix; TestClusterConfig_Roles keeps them in step). The receiver
// itself has every right.
const (
	// roleConsumer reads hit events: WECOM_HITS and its own consumers on
	// it, nothing else.
	roleConsumer = "consumer"
	// roleOperator is what the operator commands (status, tail, backfill,
	// rules, search, dlq) need, short of deleting or purging stored data
	// or reconfiguring the receiver's streams.
	roleOperator = "operator"
)

// Inbox prefixes. A consumer may subscribe to _INBOX.> (every NATS client
// receives its replies there by default), so the receiver and the operator
// commands take their replies elsewhere: otherwise a consumer could read
// the KV values (WeCom tokens) and callback records sent to them.
const (
	receiverInboxPrefix = "_INBOX_RECEIVER"
	operatorInboxPrefix = "_INBOX_OPERATOR"
)

// natsRoles are the TCP users of the embedded server for subject prefix p.
func natsRoles(p string) []broker.Role {
	return []broker.Role{
		{Name: roleConsumer, Permissions: consumerPermissions(p)},
		{Name: roleOperator, Permissions: operatorPermissions(p)},
	}
}

// consumerPermissions lets a client read hit events as plain subscriptions
// or through JetStream consumers on WECOM_HITS that it creates, reads, acks
// and deletes. The JetStream API subjects are those nats.go (jetstream and
// the older JetStreamContext) and the nats CLI send; the stream is named
// rather than looked up by subject, which would need $JS.API.STREAM.NAMES.
// Everything else is refused: KV buckets, WECOM_CALLBACKS, publishing
// events, purging, deleting messages or streams.
func consumerPermissions(p string) *server.Permissions {
	const hits = publish.StreamName
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + hits,
			"$JS.API.STREAM.MSG.GET." + hits,
			// An ephemeral consumer from an older client names no consumer.
			"$JS.API.CONSUMER.CREATE." + hits,
			// <consumer> or <consumer>.<filter subject>.
			"$JS.API.CONSUMER.CREATE." + hits + ".>",
			"$JS.API.CONSUMER.DURABLE.CREATE." + hits + ".*",
			"$JS.API.CONSUMER.INFO." + hits + ".*",
			"$JS.API.CONSUMER.MSG.NEXT." + hits + ".*",
			"$JS.API.CONSUMER.DELETE." + hits + ".*",
			"$JS.ACK." + hits + ".>",
			// Flow-control replies of push consumers.
			"$JS.FC." + hits + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".hit.>",
			"_INBOX.>",
		}},
	}
}

// operatorPermissions let a client do what the operator commands do: read
// every stream and bucket, publish (backfill publishes hit events, dlq
// replays callbacks), refresh WeCom tokens in KV, and create consumers. It
// may not write the receiver's own buckets (cursors, leases, hit tokens,
// health, suite tickets), create, update, delete or purge streams (KV buckets included),
// delete stored messages, touch the receiver's durable intake consumers,
// pause any consumer, or administer the server and account. It takes its
// replies on operatorInboxPrefix only.
func operatorPermissions(p string) *server.Permissions {
	const callbacks = intake.StreamName
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{">"},
			Deny: []string{
				"$JS.API.STREAM.CREATE.*",
				"$JS.API.STREAM.DELETE.*",
				"$JS.API.STREAM.PURGE.*",
				"$JS.API.STREAM.MSG.DELETE.*",
				"$JS.API.STREAM.RESTORE.*",
				"$JS.API.STREAM.PEER.REMOVE.*",
				// Every stream, the KV buckets' included: a bucket's
				// stream updated to a short max age or sealed loses or
				// freezes the cursors, leases and tokens.
				"$JS.API.STREAM.UPDATE.*",
				"$JS.API.CONSUMER.CREATE." + callbacks,
				"$JS.API.CONSUMER.CREATE." + callbacks + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + callbacks + ".*",
				"$JS.API.CONSUMER.DELETE." + callbacks + ".*",
				// A paused intake consumer stops every fetch until the
				// pause ends, which may be years away.
				"$JS.API.CONSUMER.PAUSE.*.*",
				// Moving streams and consumers between servers is
				// server administration.
				"$JS.API.ACCOUNT.STREAM.>",
				"$JS.API.STREAM.CANCEL_MOVE.*",
				"$JS.API.STREAM.PEER.EVACUATE.*",
				"$JS.API.CONSUMER.PEER.>",
				"$JS.API.ACCOUNT.PURGE.*",
				"$JS.API.SERVER.>",
				"$JS.API.META.>",
				// The buckets only the receiver writes: a put of
				// anything resets a cursor or takes a lease, and a put
				// with a Nats-Rollup: all header empties the bucket
				// (KV buckets allow rollups). The operator commands
				// write only the WeCom token and lock buckets.
				"$KV." + fetch.CursorBucket + ".>",
				"$KV." + fetch.LeaseBucket + ".>",
				"$KV." + fetch.TokenBucket + ".>",
				"$KV." + fetch.HealthBucket + ".>",
				"$KV." + wecom.TicketBucket + ".>",
			},
		},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".>",
			operatorInboxPrefix + ".>",
		}},
	}
}
