"""A small enterprise client for Turnpike's Kafka contract (docs/kafka-contract.md), on confluent-kafka.

Producing: `TurnProducer.send` writes one user message to the inbound topic as an `InboundTurn`
(schemas/inbound_turn.avsc) in the Confluent wire format, keyed by the session id's UTF-8 bytes, with the
Java-compatible `murmur2_random` partitioner and an idempotent producer, so a session's turns stay in order
and land on the partition Turnpike's own producers would pick.

Consuming: `ReplyConsumer` reads `OutboundReply` records (its own consumer group, at least once: an offset is
stored only after the caller handled the record), and `ReplyAssembler` turns them into whole replies: DELTA
texts in chunk order plus the FINAL's text, dropping the duplicates that Turnpike's at-least-once delivery
can produce (a DELTA seen before is recognised by (turn_id, chunk_index), a second FINAL by turn_id).

Dependencies: clients/python/requirements.txt (confluent-kafka with its Avro and schema registry extras).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

INBOUND_TOPIC = "turnpike.turns.inbound"
OUTBOUND_TOPIC = "turnpike.replies.outbound"
# ingest's limits (crates/turnpike-stages/src/ingest.rs): a turn over them is dead-lettered, never answered.
MAX_TEXT_BYTES = 32 * 1024
MAX_ID_BYTES = 256
# The consumer groups of the pipeline's stages (topology/turnpike.toml): a client must never join one.
STAGE_GROUPS = tuple(
    f"turnpike-{s}" for s in ("ingest", "guard-in", "assemble", "route", "generate", "guard-out", "deliver", "handoff")
)
SCHEMAS_DIR = pathlib.Path(__file__).resolve().parents[2] / "schemas"

# Settings the contract depends on; callers may add to them but not change these.
PRODUCER_CONTRACT = {
    # Java's partitioner: librdkafka's default (consistent_random, CRC32) puts keys elsewhere.
    "partitioner": "murmur2_random",
    # Retries never reorder or duplicate a session's turns inside Kafka.
    "enable.idempotence": True,
    "acks": "all",
}


def kafka_login_from_env() -> Dict[str, Any]:
    """The SASL settings Turnpike's own clients use, from TURNPIKE_KAFKA_USERNAME / TURNPIKE_KAFKA_PASSWORD
    (and TURNPIKE_KAFKA_SASL_MECHANISM / TURNPIKE_KAFKA_SECURITY_PROTOCOL, default PLAIN / SASL_PLAINTEXT);
    {} when no user is set. Pass it as `config` to TurnProducer and ReplyConsumer."""
    user = os.environ.get("TURNPIKE_KAFKA_USERNAME", "").strip()
    if not user:
        return {}
    return {
        "security.protocol": os.environ.get("TURNPIKE_KAFKA_SECURITY_PROTOCOL") or "SASL_PLAINTEXT",
        "sasl.mechanism": os.environ.get("TURNPIKE_KAFKA_SASL_MECHANISM") or "PLAIN",
        "sasl.username": user,
        "sasl.password": os.environ.get("TURNPIKE_KAFKA_PASSWORD", ""),
    }


def registry_login_from_env() -> Dict[str, Any]:
    """The schema registry login Turnpike's own clients use (HTTP basic), from
    TURNPIKE_SCHEMA_REGISTRY_USERNAME / TURNPIKE_SCHEMA_REGISTRY_PASSWORD; {} when no user is set. Merge it
    into the SchemaRegistryClient configuration."""
    user = os.environ.get("TURNPIKE_SCHEMA_REGISTRY_USERNAME", "").strip()
    if not user:
        return {}
    return {"basic.auth.user.info": f"{user}:{os.environ.get('TURNPIKE_SCHEMA_REGISTRY_PASSWORD', '')}"}


def load_schema(name: str, schemas_dir: pathlib.Path = SCHEMAS_DIR) -> str:
    """The text of schemas/<name>.avsc."""
    return (schemas_dir / f"{name}.avsc").read_text(encoding="utf-8")


def murmur2(data: bytes) -> int:
    """Kafka's Java `Utils.murmur2` (seed 0x9747b28c), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner (and librdkafka's murmur2_random) picks for a non-empty key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def turn_id_for(tenant_id: str, session_id: str, message_id: str) -> str:
    """The turn id ingest assigns when the producer leaves `turn_id` null: a UUIDv5 of the three ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{tenant_id}\x1f{session_id}\x1f{message_id}"))


def check_turn(turn: Dict[str, Any]) -> None:
    """Refuses locally what ingest would dead-letter (raises ValueError with ingest's reason)."""
    for name in ("tenant_id", "session_id", "user_id", "message_id"):
        value = turn.get(name) or ""
        if not value.strip():
            raise ValueError(f"{name} is empty")
        if len(value.encode("utf-8")) > MAX_ID_BYTES:
            raise ValueError(f"{name} is longer than {MAX_ID_BYTES} bytes")
        # Rust's char::is_control: the C0 and C1 control characters.
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):
            raise ValueError(f"{name} contains control characters")
    text = turn.get("text") or ""
    if not text.strip():
        raise ValueError("text is empty")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValueError(f"text is {len(text.encode('utf-8'))} bytes; the limit is {MAX_TEXT_BYTES}")


@dataclasses.dataclass
class Delivery:
    """Where a produced turn landed, filled in by the delivery report (after `poll`/`flush`)."""

    session_id: str
    message_id: str
    schema_id: int
    partition: Optional[int] = None
    offset: Optional[int] = None
    error: Optional[str] = None


class TurnProducer:
    """Produces `InboundTurn`s for one tenant."""

    def __init__(
        self,
        bootstrap: str,
        registry: SchemaRegistryClient,
        tenant_id: str,
        topic: str = INBOUND_TOPIC,
        config: Optional[Dict[str, Any]] = None,
        auto_register: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.topic = topic
        conf: Dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4"}
        conf.update(config or {})
        conf.update(PRODUCER_CONTRACT)
        self.producer = Producer(conf)
        # Turnpike registers its schemas (`turnpike schemas register`); a producer only looks its schema up,
        # so a typo in a client can never register a new version of the contract.
        self.serializer = AvroSerializer(
            registry, load_schema("inbound_turn"), conf={"auto.register.schemas": auto_register}
        )

    def send(
        self,
        session_id: str,
        user_id: str,
        message_id: str,
        text: str,
        *,
        channel: str = "kafka",
        locale: Optional[str] = None,
        attributes: Optional[Dict[str, str]] = None,
        turn_id: Optional[str] = None,
        headers: Optional[List[Tuple[str, bytes]]] = None,
    ) -> Delivery:
        turn = {
            "tenant_id": self.tenant_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "user_id": user_id,
            "message_id": message_id,
            "text": text,
            "channel": channel,
            "locale": locale,
            "sent_at_ms": int(time.time() * 1000),
            "attributes": attributes or {},
        }
        check_turn(turn)
        value = self.serializer(turn, SerializationContext(self.topic, MessageField.VALUE))
        delivery = Delivery(session_id, message_id, schema_id=int.from_bytes(value[1:5], "big"))

        def report(err, msg: Message) -> None:
            if err is not None:
                delivery.error = str(err)
            else:
                delivery.partition, delivery.offset = msg.partition(), msg.offset()

        self.producer.produce(
            self.topic, key=session_id.encode("utf-8"), value=value, headers=headers, on_delivery=report
        )
        self.producer.poll(0)
        return delivery

    def flush(self, timeout: float = 30.0) -> None:
        if self.producer.flush(timeout) != 0:
            raise KafkaException("turns still unacknowledged after flush")


@dataclasses.dataclass
class Reply:
    """One decoded outbound record and where it was read."""

    value: Dict[str, Any]
    partition: int
    offset: int
    key: bytes
    raw: bytes
    schema_id: int
    headers: Dict[str, str]

    def __getitem__(self, field: str) -> Any:
        return self.value[field]


class ReplyConsumer:
    """Reads `OutboundReply` records in its own consumer group, at least once."""

    def __init__(
        self,
        bootstrap: str,
        registry: SchemaRegistryClient,
        group_id: str,
        topic: str = OUTBOUND_TOPIC,
        config: Optional[Dict[str, Any]] = None,
    ) -> None:
        if any(group_id == g or group_id.endswith("." + g) for g in STAGE_GROUPS):
            raise ValueError(f"{group_id} is a pipeline stage's group: joining it would take its partitions")
        conf: Dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            # Offsets are stored by `done` after the caller handled a record, committed every second.
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            # deliver writes in Kafka transactions: read only committed replies, each exactly once.
            "isolation.level": "read_committed",
        }
        conf.update(config or {})
        self.topic = topic
        self.consumer = Consumer(conf)
        self.consumer.subscribe([topic])
        # Writer schema from the registry by the id in each record: new optional fields just appear.
        self.deserializer = AvroDeserializer(registry)

    def poll(self, timeout: float = 1.0) -> Optional[Reply]:
        msg = self.consumer.poll(timeout)
        if msg is None:
            return None
        if msg.error():
            raise KafkaException(msg.error())
        raw = msg.value()
        value = self.deserializer(raw, SerializationContext(msg.topic(), MessageField.VALUE))
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
        return Reply(value, msg.partition(), msg.offset(), msg.key(), raw, int.from_bytes(raw[1:5], "big"), headers)

    def done(self, reply: Reply) -> None:
        """Marks `reply` handled: its offset may now be committed."""
        self.consumer.store_offsets(offsets=[TopicPartition(self.topic, reply.partition, reply.offset + 1)])

    def position(self, partition: int) -> int:
        """The next offset this consumer will read on `partition` (-1001 when unknown)."""
        return self.consumer.position([TopicPartition(self.topic, partition)])[0].offset

    def close(self) -> None:
        self.consumer.close()


@dataclasses.dataclass
class Turn:
    """A reply being assembled, or complete once `terminal` is set."""

    tenant_id: str
    session_id: str
    turn_id: str
    seq: int
    chunks: Dict[int, str] = dataclasses.field(default_factory=dict)
    terminal: Optional[Dict[str, Any]] = None
    statuses: List[str] = dataclasses.field(default_factory=list)

    @property
    def text(self) -> str:
        body = "".join(self.chunks[i] for i in sorted(self.chunks))
        return body + (self.terminal or {}).get("text", "")

    @property
    def missing_chunks(self) -> List[int]:
        """DELTA indexes below the terminal record's index that never arrived (a broken contract)."""
        if self.terminal is None:
            return []
        return [i for i in range(self.terminal["chunk_index"]) if i not in self.chunks]


class ReplyAssembler:
    """Assembles replies per turn and drops duplicates.

    `add` returns what the record was: "delta", "status", "final" (the turn is complete: see `on_complete`),
    "duplicate" (dropped). A STATUS `forwarded_to_agent` ends a turn like a FINAL: the session belongs to a
    human agent and no bot text follows. Completed turn ids are remembered (the last `remember` of them) so a
    late duplicate of a finished turn is dropped too.
    """

    TERMINAL_STATUSES = {"forwarded_to_agent"}

    def __init__(self, on_complete: Optional[Callable[[Turn], None]] = None, remember: int = 100_000) -> None:
        self.open: Dict[str, Turn] = {}
        self.completed: "collections.OrderedDict[str, Turn]" = collections.OrderedDict()
        self.on_complete = on_complete
        self.remember = remember
        self.duplicates = 0

    def add(self, r: Dict[str, Any]) -> str:
        turn_id = r["turn_id"]
        if turn_id in self.completed:
            self.duplicates += 1
            return "duplicate"
        turn = self.open.get(turn_id)
        if turn is None:
            turn = self.open[turn_id] = Turn(r["tenant_id"], r["session_id"], turn_id, r["seq"])
        kind = r["kind"]
        if kind == "DELTA":
            if r["chunk_index"] in turn.chunks:
                self.duplicates += 1
                return "duplicate"
            turn.chunks[r["chunk_index"]] = r["text"]
            return "delta"
        if kind == "STATUS" and r.get("status") not in self.TERMINAL_STATUSES:
            turn.statuses.append(r.get("status") or "")
            return "status"
        turn.terminal = dict(r)
        del self.open[turn_id]
        self.completed[turn_id] = turn
        while len(self.completed) > self.remember:
            self.completed.popitem(last=False)
        if self.on_complete:
            self.on_complete(turn)
        return "final"


def summary_json(obj: Any) -> str:
    """JSON for a summary (datetimes from timestamp-millis fields become milliseconds)."""

    def default(o: Any) -> Any:
        if hasattr(o, "timestamp"):
            return int(o.timestamp() * 1000)
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    return json.dumps(obj, default=default, sort_keys=True)
