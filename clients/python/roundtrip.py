"""Round trip through a running Turnpike pipeline with the Python confluent-kafka client.

Run by crates/turnpike/tests/e2e/python_client.rs against a pipeline on prefixed topics; also runnable by hand
against `turnpike run` (defaults: the local stack's shipped topics):

    python roundtrip.py --tenant demo [--bootstrap H:P] [--registry URL] [--inbound T] [--outbound T]

It produces, with the Avro serializer and the schema registry: two turns of session A and one of session B,
then a resend of A's first message id (a client retry), then a third turn of A. The last one is a barrier:
per-session order means that once its reply arrived, anything the resend caused has arrived before it. Then
it consumes the outbound topic in its own group and checks that every reply is complete (DELTAs 0..n-1 then
one FINAL at n, the text the mock LLM was scripted to say), in order per session, one FINAL per turn, that
the resend got no reply, that turn ids are the ones ingest derives, and that each session's outbound records
sit on the partition its inbound turns were produced to, which is the Java murmur2 partition of the key.
Finally it re-produces the raw bytes of one DELTA and one FINAL to the outbound topic (what deliver's
at-least-once redelivery can cause) and checks the assembler drops both.

Prints one JSON summary on stdout ("ok", "failures", per-session details); exits 0 only when all checks pass.
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
import time
import uuid
from typing import Any, Dict, List

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

import turnpike_client as tc

# Support questions the input guard accepts, each scripting the mock LLM's exact reply.
SCRIPT = {
    ("A", "m1"): ("Where is my parcel?", "Your parcel left our warehouse yesterday. Tracking details are in your account."),
    ("A", "m2"): ("Can I change the delivery address?", "Yes, the address can be changed from your account page until the parcel ships."),
    ("B", "m1"): ("How do I return an item?", "Open your orders, pick the item and choose return. A prepaid label is emailed to you."),
    ("A", "m3"): ("Thanks, and the invoice?", "The invoice is attached to the order confirmation email."),
}


def log(*args: Any) -> None:
    print("[roundtrip]", *args, file=sys.stderr, flush=True)


def assembler_self_check() -> List[str]:
    """Duplicate handling on crafted records: mid-turn replays, a late FINAL, a gap."""
    failures = []
    done: List[tc.Turn] = []
    a = tc.ReplyAssembler(on_complete=done.append)

    def rec(kind: str, i: int, text: str = "", turn: str = "t1", status: Any = None) -> Dict[str, Any]:
        return {"tenant_id": "x", "session_id": "s", "turn_id": turn, "seq": 1, "chunk_index": i,
                "kind": kind, "text": text, "status": status}

    # A deliver restart mid-turn republishes chunks 0 and 1, then goes on.
    got = [a.add(rec("DELTA", 0, "He")), a.add(rec("DELTA", 1, "llo")), a.add(rec("DELTA", 0, "He")),
           a.add(rec("DELTA", 1, "llo")), a.add(rec("DELTA", 2, " there")), a.add(rec("FINAL", 3, ".")),
           a.add(rec("FINAL", 3, ".")), a.add(rec("DELTA", 2, " there"))]
    if got != ["delta", "delta", "duplicate", "duplicate", "delta", "final", "duplicate", "duplicate"]:
        failures.append(f"assembler self-check: outcomes {got}")
    if [t.text for t in done] != ["Hello there."] or a.duplicates != 4:
        failures.append(f"assembler self-check: texts {[t.text for t in done]}, duplicates {a.duplicates}")
    a.add(rec("DELTA", 1, "b", turn="t2"))
    a.add(rec("FINAL", 2, "", turn="t2"))
    if done[-1].missing_chunks != [0]:
        failures.append(f"assembler self-check: gap not detected: {done[-1].missing_chunks}")
    a.add(rec("STATUS", 0, turn="t3", status="forwarded_to_agent"))
    if done[-1].turn_id != "t3":
        failures.append("assembler self-check: forwarded_to_agent did not end the turn")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--registry", default="http://127.0.0.1:8081/apis/ccompat/v7")
    ap.add_argument("--inbound", default=tc.INBOUND_TOPIC)
    ap.add_argument("--outbound", default=tc.OUTBOUND_TOPIC)
    ap.add_argument("--tenant", default="demo")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all replies")
    args = ap.parse_args()
    # A watchdog for the calls that have no timeout of their own (librdkafka's close, a stuck socket): past
    # the reply timeout plus a margin it prints every thread's stack to stderr and exits, so a hang says where.
    faulthandler.dump_traceback_later(args.timeout + 90, exit=True)

    failures = assembler_self_check()
    run = uuid.uuid4().hex[:10]
    sessions = {"A": f"pyuser1:{run}", "B": f"pyuser2:{run}"}
    # The registry client waits forever by default; 10 s per request (it retries 3 times). The logins to
    # the registry (HTTP basic) and the broker (SASL) come from the environment, as for Turnpike's clients.
    registry = SchemaRegistryClient({"url": args.registry, "timeout": 10, **tc.registry_login_from_env()})
    login = tc.kafka_login_from_env()
    producer = tc.TurnProducer(args.bootstrap, registry, args.tenant, topic=args.inbound, config=login)
    partitions = len(producer.producer.list_topics(args.inbound, timeout=10).topics[args.inbound].partitions)
    log(f"run {run}: {args.inbound} has {partitions} partitions")

    def send(who: str, mid: str) -> tc.Delivery:
        question, reply = SCRIPT[(who, mid)]
        sid = sessions[who]
        return producer.send(sid, sid.split(":")[0], mid, f"{question} [[mock:reply={reply}]]",
                             headers=[("client", b"roundtrip.py")])

    deliveries = [send("A", "m1")]
    log("first turn serialized (schema looked up in the registry)")
    deliveries += [send("A", "m2"), send("B", "m1")]
    deliveries.append(send("A", "m1"))  # the client retry: same message id, same text
    deliveries.append(send("A", "m3"))
    producer.flush()
    for d in deliveries:
        if d.error:
            failures.append(f"produce {d.session_id}/{d.message_id}: {d.error}")
    log("produced", [(d.session_id, d.message_id, d.partition, d.offset) for d in deliveries])

    expected = {  # session -> [(message id, reply text)] in turn order
        sessions["A"]: [("m1", SCRIPT[("A", "m1")][1]), ("m2", SCRIPT[("A", "m2")][1]), ("m3", SCRIPT[("A", "m3")][1])],
        sessions["B"]: [("m1", SCRIPT[("B", "m1")][1])],
    }
    complete: Dict[str, List[tc.Turn]] = {s: [] for s in expected}
    assembler = tc.ReplyAssembler(on_complete=lambda t: complete[t.session_id].append(t)
                                  if t.session_id in complete else None)
    consumer = tc.ReplyConsumer(args.bootstrap, registry, f"py-roundtrip-{run}", topic=args.outbound, config=login)
    log("consuming", args.outbound)
    seen: Dict[str, List[tc.Reply]] = {s: [] for s in expected}
    headers_seen: Dict[str, str] = {}

    def consume_until(done, deadline: float) -> bool:
        while not done():
            if time.monotonic() > deadline:
                return False
            r = consumer.poll(0.5)
            if r is None:
                continue
            if r["session_id"] in seen:
                seen[r["session_id"]].append(r)
                headers_seen.update(r.headers)
                assembler.add(r.value)
            consumer.done(r)
        return True

    deadline = time.monotonic() + args.timeout
    all_replied = lambda: all(len(complete[s]) >= len(turns) for s, turns in expected.items())  # noqa: E731
    if not consume_until(all_replied, deadline):
        failures.append(f"timed out after {args.timeout}s: complete turns "
                        f"{ {s: len(t) for s, t in complete.items()} } of { {s: len(t) for s, t in expected.items()} }")

    log("replies complete:", {s: len(t) for s, t in complete.items()})
    summary: Dict[str, Any] = {"sessions": {}, "partitions": partitions}
    summary["inbound_schema_ids"] = sorted({d.schema_id for d in deliveries})
    for sid, turns in expected.items():
        ds = [d for d in deliveries if d.session_id == sid]
        records = seen[sid]
        key = sid.encode("utf-8")
        info: Dict[str, Any] = {
            "inbound_partitions": sorted({d.partition for d in ds if d.partition is not None}),
            "outbound_partitions": sorted({r.partition for r in records}),
            "murmur2_partition": tc.partition_for(key, partitions),
            "outbound_keys": sorted({r.key.decode("utf-8", "replace") for r in records}),
            "outbound_schema_ids": sorted({r.schema_id for r in records}),
            "turns": [{"turn_id": t.turn_id, "seq": t.seq, "text": t.text, "chunks": len(t.chunks),
                       "finish_reason": t.terminal.get("finish_reason"), "kind": t.terminal["kind"]}
                      for t in complete[sid]],
            "records": [[r["seq"], r["kind"], r["chunk_index"]] for r in records],
        }
        summary["sessions"][sid] = info
        if not (info["inbound_partitions"] == info["outbound_partitions"] == [info["murmur2_partition"]]):
            failures.append(f"{sid}: inbound partitions {info['inbound_partitions']}, outbound "
                            f"{info['outbound_partitions']}, murmur2 {info['murmur2_partition']}")
        if info["outbound_keys"] != [sid]:
            failures.append(f"{sid}: outbound keys {info['outbound_keys']}")
        got = [(t["turn_id"], t["seq"], t["text"], t["kind"]) for t in info["turns"]]
        want = [(tc.turn_id_for(args.tenant, sid, mid), i + 1, text, "FINAL") for i, (mid, text) in enumerate(turns)]
        if got != want:
            failures.append(f"{sid}: turns {got}, expected {want}")
        # Arrival order: turns by seq, chunks 0..n within a turn, FINAL last, nothing twice.
        expect_next: Dict[int, int] = {}
        last_seq = 0
        for seq, kind, idx in info["records"]:
            if seq < last_seq:
                failures.append(f"{sid}: seq {seq} arrived after seq {last_seq}")
            last_seq = max(last_seq, seq)
            if idx != expect_next.get(seq, 0):
                failures.append(f"{sid}: turn {seq} chunk {idx} ({kind}) arrived, expected {expect_next.get(seq, 0)}")
            expect_next[seq] = idx + 1
        finals = [seq for seq, kind, _ in info["records"] if kind == "FINAL"]
        if finals != list(range(1, len(turns) + 1)):
            failures.append(f"{sid}: FINALs for seqs {finals}, expected one each for 1..{len(turns)}")
        for t in complete[sid]:
            if t.missing_chunks:
                failures.append(f"{sid}: turn {t.seq} misses chunks {t.missing_chunks}")

    # deliver is at least once: re-produce the raw bytes of one DELTA and one FINAL of session B, as its
    # redelivery would, and check the assembler drops both.
    replayed = []
    b_records = seen[sessions["B"]]
    picks = [r for r in b_records if r["kind"] == "DELTA"][:1] + [r for r in b_records if r["kind"] == "FINAL"][:1]
    if len(picks) == 2:
        raw = Producer({"bootstrap.servers": args.bootstrap, **login, **tc.PRODUCER_CONTRACT})
        for r in picks:
            raw.produce(args.outbound, key=r.key, value=r.raw, headers=list(r.headers.items()),
                        on_delivery=lambda err, m: replayed.append((err, m.partition(), m.offset())))
        raw.flush(30)
        before = assembler.duplicates
        if any(err for err, _, _ in replayed):
            failures.append(f"replaying outbound records: {replayed}")
        else:
            last = {p: o for _, p, o in replayed}
            if not consume_until(lambda: all(consumer.position(p) > o for p, o in last.items()),
                                 time.monotonic() + 60):
                failures.append("replayed records not read back within 60 s")
            if assembler.duplicates - before != 2:
                failures.append(f"replayed DELTA and FINAL: {assembler.duplicates - before} dropped, expected 2")
            if len(complete[sessions["B"]]) != 1:
                failures.append("a replayed FINAL completed session B's turn a second time")
    else:
        failures.append(f"session B has no DELTA and FINAL to replay: {[r['kind'] for r in b_records]}")
    log("closing the consumer")
    consumer.close()

    summary.update({
        "ok": not failures,
        "failures": failures,
        "duplicates_dropped": assembler.duplicates,
        "replayed": [[p, o] for _, p, o in replayed],
        "outbound_headers": headers_seen,
        "producer_partitioner": tc.PRODUCER_CONTRACT["partitioner"],
    })
    print(tc.summary_json(summary))
    for f in failures:
        log("FAILED:", f)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
