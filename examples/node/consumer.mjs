// Example consumer of the receiver's hit events (docs/events.md), with the
// npm nats client: a durable JetStream consumer on WECOM_HITS with explicit
// acks that handles each hit once, keyed on its dedup id (Nats-Msg-Id), and
// stops cleanly on SIGINT or SIGTERM. Handling a hit appends a line to a
// file, which is also the record of what was handled, so a restart handles
// no hit twice.
//
//   npm ci && NATS_URL=nats://127.0.0.1:4222 NATS_NKEY=consumer.nk node consumer.mjs
//
// The consumer role has an account of its own, where the receiver's
// JetStream API is under the prefix $JS.hits.API (docs/events.md); set
// JS_API_PREFIX='$JS.API' for a server whose consumers share the
// receiver's account.
import { appendFileSync, readFileSync } from "node:fs";
import { AckPolicy, DeliverPolicy, connect, nkeyAuthenticator } from "nats";

const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
// The consumer role's seed file (receiver creds consumer), where the server asks for one.
const nkey = process.env.NATS_NKEY;
const durable = process.env.DURABLE ?? "node-example"; // the position survives restarts
const subject = process.env.SUBJECT ?? "wecom.hit.>"; // <prefix>.hit.>
const out = process.env.OUT ?? "hits.tsv"; // one line per handled hit: id, source, rule name
const apiPrefix = process.env.JS_API_PREFIX ?? "$JS.hits.API";

// The hits handled by earlier runs.
const handled = new Set();
try {
  for (const line of readFileSync(out, "utf8").split("\n")) {
    if (line) handled.add(line.split("\t")[0]);
  }
} catch (err) {
  if (err.code !== "ENOENT") throw err;
}

// The seed file has comment lines; the seed is the line starting with SU.
const seed = nkey && readFileSync(nkey, "utf8").split("\n").find((l) => l.startsWith("SU"));
const nc = await connect({
  servers,
  name: "node-consumer example",
  authenticator: seed ? nkeyAuthenticator(new TextEncoder().encode(seed.trim())) : undefined,
});
// checkAPI: false skips the account info request, which the consumer role
// may not send.
const jsm = await nc.jetstreamManager({ apiPrefix, checkAPI: false });
await jsm.consumers.add("WECOM_HITS", {
  durable_name: durable,
  filter_subject: subject,
  ack_policy: AckPolicy.Explicit,
  deliver_policy: DeliverPolicy.All,
});
const consumer = await nc.jetstream({ apiPrefix }).consumers.get("WECOM_HITS", durable);
const messages = await consumer.consume();

// Stop pulling on a signal; the loop below finishes the message in hand, and
// what was pulled but not handled is delivered again to the next run.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => messages.close());
}

for await (const m of messages) {
  const id = m.headers?.get("Nats-Msg-Id"); // <corp_id>:<msgid>:<rule_id>
  if (handled.has(id)) {
    m.ack(); // delivered again (a redelivery, a re-publish): done already
    continue;
  }
  let ev;
  try {
    ev = m.json();
  } catch {
    m.term(); // not a hit event: never deliver it again
    continue;
  }
  try {
    appendFileSync(out, `${id}\t${ev.source}\t${ev.rule_name}\n`);
  } catch (err) {
    console.error("node-consumer:", err.message);
    m.nak(); // not handled: let JetStream deliver it again
    continue;
  }
  handled.add(id);
  m.ack();
}
await nc.drain(); // the acks reach the server before the connection closes
