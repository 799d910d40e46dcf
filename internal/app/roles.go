package app

import (
	"github.com/nats-io/nats-server/v2/server"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// The NATS roles of the embedded server's TCP listener (broker, auth.go),
// and of the users an external cluster should have
// (configs/nats-cluster/*.conf carries the same accounts and permissions
// for the default prefix; TestClusterConfig_NATS keeps them in step). The
// receiver itself has every right.
const (
	// RoleConsumer reads hit events and corp lifecycle events:
	// WECOM_HITS, WECOM_CORP_EVENTS and its own consumers on them, nothing
	// else, from an account of its own (ConsumerAccount).
	RoleConsumer = "consumer"
	// RoleOperator is what the operator commands (status, tail, backfill,
	// rules, search, dlq) need, short of deleting or purging stored data
	// or reconfiguring the receiver's streams.
	RoleOperator = "operator"
)

// The consumer role's account. Consumers do not share the receiver's
// account: there, a JetStream API request the consumer may send, with a
// reply subject of its choosing, has the server write its answer to that
// subject in the account, and the callback stream and KV buckets store
// what reaches their subjects (nats-server checks no reply subject but
// "$JS." ones). In ConsumerAccount the answers come back to where nothing
// is stored. (broker.Account says more.)
const (
	ConsumerAccount = "CONSUMERS"
	// ConsumerAPIPrefix replaces "$JS.API" in the consumer role's
	// JetStream API requests: nats.go jetstream.NewWithAPIPrefix, the
	// JetStreamContext's nats.APIPrefix, nats.js's apiPrefix, the nats
	// CLI's --js-api-prefix. The consumer account has no JetStream of its
	// own, so "$JS.API" there answers nothing.
	ConsumerAPIPrefix = "$JS.hits.API"
)

// Inbox prefixes. A consumer may subscribe to _INBOX.> (every NATS client
// receives its replies there by default), so the receiver and the operator
// commands take their replies elsewhere: otherwise a consumer could read
// the KV values (WeCom tokens) and callback records sent to them. (Since
// consumers have their own account this is a second line of defence, and
// what keeps a cluster that still puts consumers in the receivers'
// account safe from reading them.)
const (
	ReceiverInboxPrefix = "_INBOX_RECEIVER"
	OperatorInboxPrefix = "_INBOX_OPERATOR"
)

// NATSRoles are the TCP users of the embedded server for subject prefix p.
func NATSRoles(p string) []broker.Role {
	return []broker.Role{
		{Name: RoleConsumer, Account: ConsumerAccountOf(p), Permissions: ConsumerPermissions(p)},
		{Name: RoleOperator, Permissions: OperatorPermissions(p)},
	}
}

// ConsumerAccountOf is the consumer role's account: hit events and corp
// lifecycle events as plain subscriptions, and JetStream pull consumers on
// WECOM_HITS and WECOM_CORP_EVENTS that its clients create, read, ack and
// delete, through the API under ConsumerAPIPrefix. The JetStream API
// subjects are those nats.go (jetstream and the older JetStreamContext),
// nats.js and the nats CLI send; the streams are named rather than looked
// up by subject, which would need $JS.API.STREAM.NAMES. Push consumers do
// not work: the server delivers their messages in the receiver's account.
func ConsumerAccountOf(p string) *broker.Account {
	api := func(rest string, streamed bool) broker.Service {
		return broker.Service{Subject: "$JS.API." + rest, As: ConsumerAPIPrefix + "." + rest, Streamed: streamed}
	}
	var services []broker.Service
	for _, stream := range []string{publish.StreamName, publish.CorpStreamName} {
		services = append(services,
			api("STREAM.INFO."+stream, false),
			api("STREAM.MSG.GET."+stream, false),
			// An ephemeral consumer from an older client names no consumer.
			api("CONSUMER.CREATE."+stream, false),
			// <consumer> or <consumer>.<filter subject>.
			api("CONSUMER.CREATE."+stream+".>", false),
			api("CONSUMER.DURABLE.CREATE."+stream+".*", false),
			api("CONSUMER.INFO."+stream+".*", false),
			api("CONSUMER.DELETE."+stream+".*", false),
			// A pull request's messages are its answers.
			api("CONSUMER.MSG.NEXT."+stream+".*", true),
			// Acks go to the subject each message names as its reply.
			broker.Service{Subject: "$JS.ACK." + stream + ".>"},
		)
	}
	return &broker.Account{
		Name:     ConsumerAccount,
		Services: services,
		// Corp lifecycle events (docs/corps.md) are in WECOM_CORP_EVENTS.
		Streams: []string{p + ".hit.>", p + ".corp.>"},
	}
}

// ConsumerPermissions are the consumer role's rights inside its own
// account: to send what the account imports, and receive hit events and
// answers. Nothing else reaches the account; the list keeps consumers from
// using it to talk among themselves.
func ConsumerPermissions(p string) *server.Permissions {
	var pub []string
	for _, sv := range ConsumerAccountOf(p).Services {
		if sv.As != "" {
			pub = append(pub, sv.As)
		} else {
			pub = append(pub, sv.Subject)
		}
	}
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".hit.>",
			// Corp lifecycle events (docs/corps.md).
			p + ".corp.>",
			"_INBOX.>",
		}},
	}
}

// OperatorPermissions let a client do what the operator commands do: read
// every stream and bucket, publish (backfill publishes hit events, dlq
// replays callbacks), refresh WeCom tokens in KV, and create consumers. It
// may not write the receiver's own buckets (cursors, leases, hit tokens,
// health, suite tickets), create, update, delete or purge streams (KV buckets included),
// delete stored messages, touch the receiver's durable intake consumers,
// pause any consumer, or administer the server and account. It takes its
// replies on OperatorInboxPrefix only.
func OperatorPermissions(p string) *server.Permissions {
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
				// A forged "exchanged" record would make a replica skip
				// a corp's create_auth. The registry itself stays
				// writable: `corps remove` cancels and erases entries.
				"$KV." + corps.CodeBucket + ".>",
			},
		},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".>",
			OperatorInboxPrefix + ".>",
		}},
	}
}
