"""The gateway entrance of a chaos run (`loadtest/chaos.py --gateway-share F`): end users over HTTP and SSE
through two `turnpike-gateway` instances, each checked as the web page would read its conversation.

A share of the run's sessions send their turns with `POST /v1/messages` (retrying the same `message_id` on
another instance when one fails: the gateway accepts a resent id once) instead of producing to Kafka, and
follow their conversation's event stream (`GET /v1/sessions/{id}/events`), reconnecting to the other
instance with `Last-Event-ID` whenever a stream drops (a gateway killed, Redis gone). The page's view of a
turn is every `delta` in arrival order and then the `final`'s text: a repeated event, a `delta` out of
order or after the `final`, or a second `final` is something the customer would see, and is counted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

import requests

# Statuses that end a turn instead of a `final` (the others, such as `typing`, come before one).
TERMINAL_STATUSES = ("forwarded_to_agent", "refused")


def jwt_hs256(secret: str, claims: Dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


class GatewayInstance:
    """One `turnpike-gateway` process; the chaos supervisor restarts it when it exits."""

    def __init__(self, n: int, bin_dir: pathlib.Path, prefix: str, port: int, secret: str, logs: pathlib.Path):
        self.stage, self.id, self.port = "gateway", f"{prefix}-gateway-{n}", port
        config = logs / f"gateway-{n}.toml"
        config.write_text(f'listen = "127.0.0.1:{port}"\n[[auth.jwt.keys]]\nalg = "HS256"\nsecret_env = "CHAOS_JWT_SECRET"\n')
        # A stable instance id, as a StatefulSet gives: the restarted instance takes its outbound partitions
        # back at once (without one, they wait for the killed member's session timeout, 30 s).
        self.cmd = [str(bin_dir / "turnpike-gateway"), "--topic-prefix", prefix, "--metrics-addr", "127.0.0.1:0",
                    "--instance-id", self.id]
        self.env = dict(os.environ, TURNPIKE_GATEWAY_CONFIG=str(config), CHAOS_JWT_SECRET=secret,
                        RUST_LOG=os.environ.get("RUST_LOG", "warn"), NO_COLOR="1")
        self.log = open(logs / f"gateway-{n}.log", "ab")
        self.proc: Optional[subprocess.Popen] = None
        self.restarts = 0
        self.exits: List[int] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log, env=self.env)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Conversation(threading.Thread):
    """One end user's conversation: its event stream, followed across drops and instances."""

    def __init__(self, session: str, tenant: str, secret: str, gateways: List[GatewayInstance], first: int):
        super().__init__(daemon=True)
        self.user, self.conv = session.split(":", 1)
        now = int(time.time())
        self.token = jwt_hs256(secret, {"sub": self.user, "tenant": tenant, "iat": now, "exp": now + 86400})
        self.gateways = gateways
        self.turn = first  # which instance to use next: moves on after every failure
        self.last_id: Optional[str] = None
        self.events: List[Dict[str, Any]] = []
        self.ready = threading.Event()
        self.reconnects = 0
        self.stopping = False

    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def next_url(self, failed: bool) -> str:
        if failed:
            self.turn += 1
        return self.gateways[self.turn % len(self.gateways)].url()

    def run(self) -> None:
        failed = False
        while not self.stopping:
            url = self.next_url(failed)
            headers = dict(self.headers(), Accept="text/event-stream")
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            try:
                with requests.get(f"{url}/v1/sessions/{self.conv}/events", headers=headers, stream=True,
                                  timeout=(3, 30)) as r:
                    if r.status_code != 200:
                        raise requests.RequestException(f"status {r.status_code}")
                    self.read(r)
                failed = True  # the stream ended (a shutdown): resume elsewhere
            except (requests.RequestException, ValueError):
                failed = True
            if not self.stopping:
                self.reconnects += 1
                time.sleep(0.2)

    def read(self, r: requests.Response) -> None:
        event: Dict[str, str] = {}
        for raw in r.iter_lines(decode_unicode=True):
            if self.stopping:
                return
            if raw is None:
                continue
            if raw == "":
                self.dispatch(event)
                event = {}
            elif raw.startswith(":"):
                continue
            else:
                field, _, value = raw.partition(":")
                event[field] = event.get(field, "") + value.removeprefix(" ")

    def dispatch(self, event: Dict[str, str]) -> None:
        if "data" not in event:
            return
        data = json.loads(event["data"])
        if data.get("type") == "ready":
            self.ready.set()
            # A stream opened without an id sends only new events: from now on, resume after the last one.
            if self.last_id is None:
                self.last_id = "0"
            return
        if "id" in event:
            self.last_id = event["id"]
        data["_at"] = time.monotonic()
        self.events.append(data)

    def send(self, message_id: str, text: str, deadline_s: float = 120) -> Optional[str]:
        """POSTs one message until a gateway accepts it (the same `message_id` every time); its turn id."""
        self.ready.wait(timeout=30)
        deadline, failed = time.monotonic() + deadline_s, False
        while time.monotonic() < deadline:
            url = self.next_url(failed)
            try:
                r = requests.post(f"{url}/v1/messages", headers=self.headers(), timeout=10,
                                  json={"conversation_id": self.conv, "text": text, "message_id": message_id})
                if r.status_code == 202:
                    return r.json()["turn_id"]
                if r.status_code == 429:
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                if r.status_code < 500:
                    raise SystemExit(f"the gateway refused a chaos message: {r.status_code} {r.text}")
            except requests.RequestException:
                pass
            failed = True
            time.sleep(0.5)
        return None


class Entrance:
    """The gateway instances and the conversations that use them."""

    def __init__(self, args: Any, prefix: str, logs: pathlib.Path, sessions: List[str]):
        secret = base64.b64encode(os.urandom(48)).decode()
        self.instances = [GatewayInstance(n, args.bin_dir, prefix, args.gateway_port + n, secret, logs) for n in (0, 1)]
        # Half the conversations start on each instance.
        self.conversations = {s: Conversation(s, args.tenant, secret, self.instances, n)
                              for n, s in enumerate(sessions)}
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.unsent: List[str] = []

    def start(self) -> None:
        for i in self.instances:
            i.start()
        deadline = time.monotonic() + 120
        for i in self.instances:
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{i.url()}/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
        for c in self.conversations.values():
            c.start()

    def send(self, session: str, message_id: str, text: str, turn_id: str) -> None:
        def post() -> None:
            got = self.conversations[session].send(message_id, text)
            if got is None:
                self.unsent.append(turn_id)
            elif got != turn_id:
                raise SystemExit(f"the gateway's turn id {got} differs from ingest's {turn_id}")
        self.pool.submit(post)

    def stop(self) -> None:
        self.pool.shutdown(wait=True)
        for c in self.conversations.values():
            c.stopping = True

    def terminal_turns(self) -> Dict[str, float]:
        """Turns whose end (a `final`, or a terminal status) some conversation's stream has shown, and when."""
        ends: Dict[str, float] = {}
        for c in self.conversations.values():
            for e in list(c.events):
                if e.get("turn_id") and (e["type"] == "final" or e.get("status") in TERMINAL_STATUSES):
                    ends.setdefault(e["turn_id"], e["_at"])
        return ends

    def check(self, offered: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
        """Each gateway turn as the page shows it: deltas in arrival order, then the final's text."""
        by_turn: Dict[str, List[Dict[str, Any]]] = {}
        ids_twice, twice_examples = 0, []
        for c in self.conversations.values():
            seen = set()
            for n, e in enumerate(c.events):
                if e.get("id") in seen:
                    ids_twice += 1
                    if len(twice_examples) < 5:
                        # The event, and what the conversation received around it (ids in arrival order).
                        twice_examples.append({"session": f"{c.user}:{c.conv}", "id": e.get("id"),
                                               "around": [x.get("id") for x in c.events[max(0, n - 12):n + 3]]})
                seen.add(e.get("id"))
                if e.get("turn_id"):
                    by_turn.setdefault(e["turn_id"], []).append(e)
        out = {"web_offered": 0, "web_whole": 0, "web_apology": 0, "web_lost": 0, "web_garbled": 0,
               "web_twice": ids_twice, "web_out_of_order": 0, "web_unsent": len(self.unsent),
               "web_reconnects": sum(c.reconnects for c in self.conversations.values()), "web_examples": [],
               "web_twice_examples": twice_examples}
        for turn_id, o in offered.items():
            if not o.get("web"):
                continue
            out["web_offered"] += 1
            events = by_turn.get(turn_id, [])
            finals = [e for e in events if e["type"] == "final" or e.get("status") in TERMINAL_STATUSES]
            if not finals:
                out["web_lost"] += 1
                continue
            if len(finals) > 1:
                out["web_twice"] += 1
                if len(out["web_twice_examples"]) < 10:
                    out["web_twice_examples"].append({"turn": turn_id, "terminal": [
                        {k: f.get(k) for k in ("id", "type", "status", "finish_reason")} for f in finals]})
            first = events.index(finals[0])
            deltas = [e for e in events[:first] if e["type"] == "delta"]
            indexes = [e["chunk_index"] for e in deltas]
            if indexes != sorted(set(indexes)) or any(e["type"] == "delta" for e in events[first + 1:]):
                out["web_out_of_order"] += 1
            shown = "".join(e["text"] for e in deltas)
            text = shown + (finals[0].get("text") or "")
            if finals[0].get("status") == "forwarded_to_agent":
                continue
            if text == o["reply"]:
                out["web_whole"] += 1
            elif finals[0].get("finish_reason") == "incomplete" and o["reply"].startswith(shown):
                out["web_apology"] += 1
            else:
                out["web_garbled"] += 1
                if len(out["web_examples"]) < 5:
                    out["web_examples"].append({"turn": turn_id, "got": text, "want": o["reply"]})
        return out
