"""Chaos run: the pipeline as one process per stage instance, turns through Kafka, faults on a schedule, and a
checker that assembles every reply as a contract-following consumer (docs/kafka-contract.md) and compares it
byte for byte with the reply the mock LLM was scripted to stream.

    eval "$(deploy/local/stack.sh env)"
    cargo build --release -p turnpike -p turnpike-llm
    deploy/local/python-env.sh >/dev/null
    .stack/venv/bin/python loadtest/chaos.py --fault stage-kill --duration 600 --json chaos-stage-kill.json

Faults (`--fault`, repeatable; each runs for `--duration` seconds on a fresh topic prefix):
  none           baseline: no fault
  stage-kill     SIGKILL a random stage instance every `--every` seconds (a supervisor restarts it at once
                 with the same instance id, as an orchestrator would)
  kill:STAGE     the same, only instances of STAGE (ingest, guard-in, ..., handoff)
  broker         SIGKILL the local Kafka broker every `--every` seconds and start it again after `--down` s
                 (uses deploy/local/stack.sh; disturbs everything else on the local stack)
  cassandra      the same for Cassandra
  redis          the same for Redis, whose data is deleted while it is down (restarted empty)
  registry       the same for the schema registry
  gateway-kill   SIGKILL one of the two gateway instances (with --gateway-share), restarted at once
  provider:F     the primary LLM deployment acts out F for `--down` s every `--every` s, while generate's chain
                 fails over to (or continues on) the secondary: F is `503` (an outage), `429` (a rate-limit
                 storm), `cut` (every stream cut after 3 chunks) or `stall` (2 chunks, then silence)
  partition      instance 0 of each `--partition-stages` stage (default generate, guard-out, deliver: their twins
                 stay connected) reaches the broker only through a TCP proxy (loadtest/chaos_proxy.py, the
                 stack's PROXIED listener), which black-holes its connections for `--down` s every `--every` s
                 while the load goes on: the group evicts the cut-off members, the twins take over, and the
                 partitioned ones come back as zombies that must be fenced
  partition:STAGE  the same for instance 0 of STAGE only

Every stage runs as its own `turnpike stage` process; generate, guard-out and deliver run two instances each.
The mock LLM runs as two processes of its own (`turnpike-mock-llm`), streaming at `--tokens-per-sec`: the
primary and the secondary deployment of every tier's chain (`TURNPIKE_LLM_CONFIG`), both able to continue a
cut reply (the vLLM flag), so generate resumes after a crash or a cut stream instead of apologising.

With `--gateway-share F` (e.g. 0.5), that share of the sessions are end users of two gateway instances over
HTTP + SSE instead of Kafka producers, each also checked as the web page would read it
(`loadtest/chaos_gateway.py`; columns `web_*`).

Per fault it prints and writes (JSON): turns offered, answered whole, answered with an apology (the
pipeline's incomplete notice), to an agent (a later turn of a session an apology handed to a human: the bot
stays silent), lost (no FINAL by the end), garbled (a FINAL whose assembled text is neither
the scripted reply nor an apology after a prefix of it), terminal twice, out of order (a session's turns, or a
turn's chunk indexes, out of order, or a record after its FINAL), and the time to recover after each fault
(the longest wait for a reply among the turns offered within 2 s of the fault, beside the run's median wait).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "loadtest"))

import turnpike_client as tc  # noqa: E402
from chaos_gateway import Entrance  # noqa: E402
from chaos_proxy import PartitionProxy  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

# Faults that take a local stack service down (SIGKILL, `--down` seconds, `stack.sh start`).
SERVICES = {"broker": "kafka", "cassandra": "cassandra", "redis": "redis", "registry": "apicurio"}
STAGES = ["ingest", "guard-in", "assemble", "route", "generate", "guard-out", "deliver", "handoff"]
TWICE = {"generate", "guard-out", "deliver"}
APOLOGY_PREFIX = "I'm sorry"
# Plain words only: nothing the output guard's checks (commitments, PII, brand) would redact or block.
WORDS = ("parcel delivery order account invoice courier warehouse label tracking weekend morning store team "
         "status window message blue quiet river garden station bright harbour").split()


def log(*a: Any) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def scripted_reply(rng: random.Random) -> str:
    """Three to six plain sentences: several chunks per reply, nothing the output guard would touch."""
    sentences = []
    for _ in range(rng.randint(3, 6)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 10))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


class Instance:
    """One stage process, restarted by the supervisor whenever it exits (unless stopping)."""

    def __init__(self, stage: str, n: int, args: argparse.Namespace, prefix: str, llm_config: pathlib.Path,
                 logs: pathlib.Path):
        self.stage, self.id, self.llm_config = stage, f"{prefix}-{stage}-{n}", llm_config
        self.cmd = [str(args.bin_dir / "turnpike"), "stage", stage, "--instance-id", self.id, "--topic-prefix", prefix,
                    "--metrics-addr", "127.0.0.1:0", "--topology", str(ROOT / "topology" / "turnpike.toml")]
        self.log = open(logs / f"{stage}-{n}.log", "ab")
        self.proc: Optional[subprocess.Popen] = None
        self.restarts = 0
        self.exits: List[int] = []
        self.extra_env: Dict[str, str] = {}

    def start(self) -> None:
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), NO_COLOR="1",
                   TURNPIKE_LLM_CONFIG=str(self.llm_config), **self.extra_env)
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log, env=env)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)


class Supervisor(threading.Thread):
    def __init__(self, instances: List[Instance]):
        super().__init__(daemon=True)
        self.instances, self.stopping = instances, False

    def run(self) -> None:
        while not self.stopping:
            for i in self.instances:
                if i.proc is not None and i.proc.poll() is not None and not self.stopping:
                    i.exits.append(i.proc.returncode)
                    i.restarts += 1
                    i.start()
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping = True
        for i in self.instances:
            if i.proc and i.proc.poll() is None:
                i.proc.send_signal(signal.SIGTERM)
        for i in self.instances:
            if i.proc:
                try:
                    i.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    i.proc.kill()


class Outbound(threading.Thread):
    """Reads the outbound topic read_committed from the start and keeps every record with its arrival time."""

    def __init__(self, topic: str, partitions: int, registry: SchemaRegistryClient, login: Dict[str, Any], bootstrap: str):
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "isolation.level": "read_committed", **login})
        self.consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
        self.deserialize = AvroDeserializer(registry)
        self.ctx = SerializationContext(topic, MessageField.VALUE)
        self.records: List[Dict[str, Any]] = []
        self.final_times: List[float] = []
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            m = self.consumer.poll(0.2)
            if m is None or m.error():
                continue
            r = self.deserialize(m.value(), self.ctx)
            r["_at"] = time.monotonic()
            self.records.append(r)
            if r["kind"] == "FINAL":
                self.final_times.append(r["_at"])
        self.consumer.close()

    def finals(self) -> int:
        return len(self.final_times)


def check(offered: Dict[str, Dict[str, Any]], records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Assembles every turn as a contract-following consumer and classifies it."""
    by_turn: Dict[str, List[Dict[str, Any]]] = {}
    order_violations = 0
    last_seq: Dict[str, int] = {}
    for r in records:
        by_turn.setdefault(r["turn_id"], []).append(r)
        sid = r["session_id"]
        if r["seq"] < last_seq.get(sid, 0):
            order_violations += 1
        last_seq[sid] = max(last_seq.get(sid, 0), r["seq"])
    out = {"offered": len(offered), "whole": 0, "apology": 0, "to_agent": 0, "lost": 0, "garbled": 0, "terminal_twice": 0,
           "out_of_order": order_violations, "garbled_examples": []}
    for turn_id, o in offered.items():
        recs = by_turn.get(turn_id, [])
        finals = [r for r in recs if r["kind"] in ("FINAL", "STATUS")]
        if not finals:
            out["lost"] += 1
            continue
        if len(finals) > 1:
            out["terminal_twice"] += 1
        # The contract: a DELTA whose (turn, index) was seen is dropped; text = DELTAs by index + FINAL text.
        seen, deltas, after_final, prev = set(), {}, False, -1
        for r in recs:
            if r["kind"] in ("FINAL", "STATUS"):
                break
            if r["chunk_index"] <= prev:
                after_final = True  # an index repeated or going back
            prev = max(prev, r["chunk_index"])
            if r["chunk_index"] not in seen:
                seen.add(r["chunk_index"])
                deltas[r["chunk_index"]] = r["text"] or ""
        first_final = finals[0]
        if any(r["kind"] == "DELTA" for r in recs[recs.index(first_final) + 1:]) or after_final:
            out["out_of_order"] += 1
        text = "".join(deltas[i] for i in sorted(deltas)) + (first_final["text"] or "")
        if first_final["kind"] == "STATUS" and first_final.get("status") == "forwarded_to_agent":
            # An earlier turn of the session was handed to a human: the bot stays silent, as it should.
            out["to_agent"] += 1
        elif text == o["reply"]:
            out["whole"] += 1
        elif first_final.get("finish_reason") == "incomplete":
            shown = "".join(deltas[i] for i in sorted(deltas))
            if o["reply"].startswith(shown):
                out["apology"] += 1
            else:
                out["garbled"] += 1
        else:
            out["garbled"] += 1
            if len(out["garbled_examples"]) < 5:
                out["garbled_examples"].append({"turn": turn_id, "got": text, "want": o["reply"],
                                                "records": [{k: r.get(k) for k in ("kind", "chunk_index", "finish_reason", "status")} for r in recs]})
    return out


def stack_env_pids() -> Dict[str, int]:
    pids = {}
    state = pathlib.Path(os.environ.get("TURNPIKE_STACK_DIR", ROOT / ".stack"))
    for f in (state / "run").glob("*.pid") if (state / "run").exists() else []:
        try:
            pids[f.stem] = int(f.read_text().strip())
        except ValueError:
            pass
    return pids


def run_fault(fault: str, args: argparse.Namespace) -> Dict[str, Any]:
    rng = random.Random(args.seed)
    prefix = f"chaos{uuid.uuid4().hex[:6]}"
    logs = pathlib.Path(args.logs) / prefix
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TURNPIKE_TOPIC_PREFIX=prefix)
    subprocess.run([str(args.bin_dir / "turnpike"), "setup", "--topology", str(ROOT / "topology" / "turnpike.toml")],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    mocks = [subprocess.Popen([str(args.bin_dir / "turnpike-mock-llm"), "--addr", f"127.0.0.1:{args.mock_port + n}",
                               "--ttft-ms", str(args.ttft_ms), "--tokens-per-sec", str(args.tokens_per_sec)],
                              stdout=open(logs / f"mock-{n}.log", "ab"), stderr=subprocess.STDOUT) for n in (0, 1)]
    llm_config = logs / "llm.toml"
    llm_config.write_text(llm_toml(args.mock_port))
    instances = [Instance(s, n, args, prefix, llm_config, logs) for s in STAGES for n in range(2 if s in TWICE else 1)]
    args.proxy = None
    if fault.startswith("partition"):
        args.proxy = partition_proxy(fault, args, instances)
    for i in instances:
        i.start()
    sup = Supervisor(instances)
    sup.start()
    try:
        return drive(fault, args, rng, prefix, instances, logs)
    finally:
        # Whatever happened (an error, Ctrl-C), no stage process or mock outlives the run.
        sup.stop()
        for m in mocks:
            m.terminate()


def partition_proxy(fault: str, args: argparse.Namespace, instances: List[Instance]) -> PartitionProxy:
    """Puts instance 0 of the chosen stages behind the partition proxy (the stack's PROXIED listener)."""
    def addr(var: str) -> tuple:
        value = os.environ.get(var)
        if not value:
            raise SystemExit(f"{var} is not set: eval \"$(deploy/local/stack.sh env)\" of a stack started by this "
                             "version of stack.sh (its broker needs the PROXIED listener)")
        host, port = value.rsplit(":", 1)
        return host, int(port)
    proxy_addr = addr("TURNPIKE_KAFKA_PARTITION_PROXY")
    proxy = PartitionProxy(proxy_addr, addr("TURNPIKE_KAFKA_PARTITION_LISTENER")).start_and_wait()
    stages = [fault.split(":", 1)[1]] if ":" in fault else args.partition_stages.split(",")
    chosen = [i for i in instances if i.stage in stages and i.id.endswith("-0")]
    if len(chosen) != len(stages):
        raise SystemExit(f"unknown stage in {stages}")
    for i in chosen:
        i.extra_env["TURNPIKE_KAFKA_BOOTSTRAP"] = f"{proxy_addr[0]}:{proxy_addr[1]}"
    log(f"behind the partition proxy: {', '.join(i.id for i in chosen)}")
    return proxy


def llm_toml(port: int) -> str:
    """Both tiers: the primary mock, then the secondary; both continue a cut reply (vLLM's flag)."""
    deployments = "".join(f"""
[[deployments]]
name = "mock-{name}"
provider = "openai"
base_url = "http://127.0.0.1:{port + n}/v1"
continuation = "vllm"
ttft_timeout_ms = 3000
idle_timeout_ms = 2000
""" for n, name in enumerate(("primary", "secondary")))
    tiers = "".join(f"""
[tiers.{tier}]
chain = ["mock-primary", "mock-secondary"]
""" for tier in ("cheap", "capable"))
    return deployments + tiers


def set_provider_fault(port: int, fault: str) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mock/fault", data=fault.encode(), method="PUT")
    urllib.request.urlopen(req, timeout=5).read()


def drive(fault: str, args: argparse.Namespace, rng: random.Random, prefix: str, instances: List[Any],
          logs: pathlib.Path) -> Dict[str, Any]:
    registry = SchemaRegistryClient({"url": os.environ.get("TURNPIKE_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"),
                                     "timeout": 10, **tc.registry_login_from_env()})
    login = tc.kafka_login_from_env()
    bootstrap = os.environ.get("TURNPIKE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    inbound, outbound = f"{prefix}.{tc.INBOUND_TOPIC}", f"{prefix}.{tc.OUTBOUND_TOPIC}"
    producer = tc.TurnProducer(bootstrap, registry, args.tenant, topic=inbound, config=login)
    reader = Outbound(outbound, 6, registry, login, bootstrap)
    reader.start()
    time.sleep(args.warmup)

    offered: Dict[str, Dict[str, Any]] = {}
    sessions = [f"chaos{n}:{prefix}" for n in range(args.sessions)]
    web = set(sessions[:int(args.gateway_share * len(sessions))])
    entrance = Entrance(args, prefix, logs, sorted(web)) if web else None
    if entrance:
        entrance.start()
        instances.extend(entrance.instances)  # supervised (restarted) like the stages
    next_turn = {s: 1 for s in sessions}
    faults: List[Dict[str, Any]] = []
    started = time.monotonic()
    next_fault = started + args.every
    sent = 0
    while time.monotonic() - started < args.duration:
        # Turns at a steady rate, sessions round robin: each session's turns are spaced apart.
        due = int((time.monotonic() - started) * args.rate)
        while sent < due:
            s = sessions[sent % len(sessions)]
            t = next_turn[s]
            next_turn[s] += 1
            reply = scripted_reply(rng)
            mid = f"m{t}"
            text = f"Question {t} about my order [[mock:reply={reply}]]"
            turn_id = tc.turn_id_for(args.tenant, s, mid)
            if s in web:
                entrance.send(s, mid, text, turn_id)
            else:
                producer.send(s, s.split(":")[0], mid, text)
            offered[turn_id] = {"reply": reply, "session": s, "seq": t, "at": time.monotonic(), "web": s in web}
            sent += 1
        if fault != "none" and time.monotonic() >= next_fault:
            faults.append(inject(fault, instances, rng, args, reader))
            next_fault = time.monotonic() + args.every
        time.sleep(0.01)
    producer.flush()
    if entrance:
        entrance.pool.shutdown(wait=True)  # every POST accepted (or given up on) before the drain starts
    log(f"{fault}: {sent} turns offered, {len(faults)} faults; waiting for the replies")
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        done = {r["turn_id"] for r in reader.records if r["kind"] in ("FINAL", "STATUS")}
        web_done = entrance.terminal_turns() if entrance else {}
        if all(t in done and (not o["web"] or t in web_done) for t, o in offered.items()):
            break
        time.sleep(1)
    time.sleep(3)  # a late duplicate
    reader.stopping = True
    reader.join()
    result = check(offered, reader.records)
    if entrance:
        entrance.stop()
        result.update(entrance.check(offered))
    # Time to recover: the longest a turn offered around the fault (2 s either side) waited for its terminal
    # record, against the run's median wait.
    answered = {r["turn_id"]: r["_at"] for r in reader.records if r["kind"] in ("FINAL", "STATUS")}
    waits = {t: answered[t] - o["at"] for t, o in offered.items() if t in answered}
    result["wait_s_median"] = round(statistics.median(waits.values()), 3) if waits else None
    web_answered = entrance.terminal_turns() if entrance else {}
    web_waits = {t: web_answered[t] - o["at"] for t, o in offered.items() if t in web_answered}
    if web_waits:
        result["web_wait_s_median"] = round(statistics.median(web_waits.values()), 3)
    for f in faults:
        near = [w for t, w in waits.items() if abs(offered[t]["at"] - f["at"]) <= 2]
        f["recover_s"] = round(max(near), 2) if near else None
        web_near = [w for t, w in web_waits.items() if abs(offered[t]["at"] - f["at"]) <= 2]
        f["web_recover_s"] = round(max(web_near), 2) if web_near else None
        f["at"] = round(f["at"] - started, 1)
    recover = [f["recover_s"] for f in faults if f["recover_s"] is not None]
    result.update({
        "fault": fault, "duration_s": args.duration, "rate": args.rate, "faults": len(faults),
        "recover_s_median": statistics.median(recover) if recover else None,
        "recover_s_max": max(recover) if recover else None,
        "web_recover_s_max": max((f["web_recover_s"] for f in faults if f.get("web_recover_s") is not None),
                                 default=None),
        "restarts": {i.id: i.restarts for i in instances if i.restarts},
        "exit_codes": sorted({c for i in instances for c in i.exits}),
        "apology_pct": round(100 * result["apology"] / max(1, result["offered"]), 3),
        "fault_log": faults, "prefix": prefix,
    })
    return result


def inject(fault: str, instances: List[Instance], rng: random.Random, args: argparse.Namespace, reader: Outbound) -> Dict[str, Any]:
    at = time.monotonic()
    if fault == "stage-kill" or fault.startswith("kill:"):
        pool = [i for i in instances if fault == "stage-kill" or i.stage == fault.split(":", 1)[1]]
        victim = rng.choice(pool)
        victim.kill()
        return {"at": at, "what": f"SIGKILL {victim.id}"}
    if fault == "gateway-kill":
        victim = rng.choice([i for i in instances if i.stage == "gateway"])
        victim.kill()
        return {"at": at, "what": f"SIGKILL {victim.id}"}
    if fault in SERVICES:
        svc = SERVICES[fault]
        pid = stack_env_pids().get(svc)
        if pid:
            os.kill(pid, signal.SIGKILL)
        if fault == "redis":
            # Restarted empty: every session's state, vault, markers and checker states gone at once.
            state = pathlib.Path(os.environ.get("TURNPIKE_STACK_DIR", ROOT / ".stack"))
            for f in (state / "data" / "redis").rglob("*"):
                if f.is_file():
                    f.unlink()
        time.sleep(args.down)
        subprocess.run([str(ROOT / "deploy" / "local" / "stack.sh"), "start"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {"at": at, "what": f"{svc} SIGKILLed (pid {pid}), started after {args.down}s"}
    if fault.startswith("provider:"):
        kind = fault.split(":", 1)[1]
        set_provider_fault(args.mock_port, kind)
        time.sleep(args.down)
        set_provider_fault(args.mock_port, "none")
        return {"at": at, "what": f"primary LLM {kind} for {args.down}s"}
    if fault.startswith("partition"):
        # The load goes on while the route is gone: the twins must take the partitions over.
        args.proxy.partition()
        threading.Timer(args.down, args.proxy.heal).start()
        return {"at": at, "what": f"partitioned from the broker for {args.down}s"}
    raise SystemExit(f"unknown fault {fault}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fault", action="append", default=None)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load per fault")
    ap.add_argument("--every", type=float, default=10, help="seconds between faults")
    ap.add_argument("--down", type=float, default=30, help="seconds a killed service stays down")
    ap.add_argument("--rate", type=float, default=10, help="turns per second offered")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--tenant", default="demo")
    ap.add_argument("--ttft-ms", type=int, default=100)
    ap.add_argument("--tokens-per-sec", type=int, default=60)
    ap.add_argument("--mock-port", type=int, default=18090, help="the primary mock's; the secondary's is one more")
    ap.add_argument("--gateway-share", type=float, default=0.0,
                    help="share of sessions that are end users of two gateway instances over HTTP + SSE")
    ap.add_argument("--gateway-port", type=int, default=18480, help="the first gateway's; the second's is one more")
    ap.add_argument("--partition-stages", default="generate,guard-out,deliver",
                    help="with --fault partition: the stages whose instance 0 goes through the partition proxy")
    ap.add_argument("--warmup", type=float, default=8, help="seconds for the stages to join their groups")
    ap.add_argument("--drain", type=float, default=180, help="seconds to wait for the last replies")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bin-dir", type=pathlib.Path, default=ROOT / "target" / "release",
                    help="where turnpike and turnpike-mock-llm are (e.g. target/debug)")
    ap.add_argument("--logs", default=str(ROOT / ".stack" / "logs" / "chaos"))
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    results = [run_fault(f, args) for f in (args.fault or ["stage-kill"])]
    cols = ["fault", "offered", "whole", "apology", "to_agent", "lost", "garbled", "terminal_twice", "out_of_order",
            "faults", "wait_s_median", "recover_s_median", "recover_s_max"]
    if args.gateway_share > 0:
        cols += ["web_offered", "web_whole", "web_apology", "web_lost", "web_garbled", "web_twice", "web_out_of_order",
                 "web_unsent", "web_reconnects", "web_wait_s_median", "web_recover_s_max"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    bad = any(r["lost"] or r["garbled"] or r["terminal_twice"] or r["out_of_order"] or r.get("web_lost")
              or r.get("web_garbled") or r.get("web_twice") or r.get("web_out_of_order") or r.get("web_unsent")
              for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
