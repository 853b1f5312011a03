"""Loopback stand-ins for Slack's Web API (`chat.postMessage`) and PagerDuty's Events API v2
(`/v2/enqueue`). Both check what they receive as the real services would (token, channel,
the Events v2 fields) and record it; answers can be scripted to fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLACK_TOKEN = "xoxb-000000000000-test-token-abcdef"
SLACK_CHANNEL = "C0ALERTS"
ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


def pagerduty_problems(body: dict) -> list[str]:
    """What PagerDuty's Events v2 would refuse in `body` (400 Invalid event)."""
    problems = []
    if body.get("routing_key") != ROUTING_KEY:
        problems.append("routing_key")
    if body.get("event_action") not in EVENT_ACTIONS:
        problems.append("event_action")
    dedup = body.get("dedup_key")
    if not isinstance(dedup, str) or not 0 < len(dedup) <= 255:
        problems.append("dedup_key")
    if body.get("event_action") == "trigger":
        payload = body.get("payload") or {}
        if not isinstance(payload.get("summary"), str) or not 0 < len(payload["summary"]) <= 1024:
            problems.append("payload.summary")
        if not payload.get("source"):
            problems.append("payload.source")
        if payload.get("severity") not in SEVERITIES:
            problems.append("payload.severity")
        for link in body.get("links", []):
            if not str(link.get("href", "")).startswith(("http://", "https://")):
                problems.append("links.href")
    return problems


class AlertReceivers:
    """One HTTP server on 127.0.0.1: `/api/chat.postMessage` (Slack), `/v2/enqueue` (PagerDuty).
    `fail_next["slack"|"pagerduty"] = n` answers the next n requests with HTTP 500."""

    def __init__(self) -> None:
        self.slack: list[dict] = []
        self.pagerduty: list[dict] = []
        self.refused: list[tuple[str, object]] = []
        self.fail_next = {"slack": 0, "pagerduty": 0}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - stdlib naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/chat.postMessage":
                    receivers._slack(self, raw)
                elif self.path == "/v2/enqueue":
                    receivers._pagerduty(self, raw)
                else:
                    self._answer(404, {"error": "not found"})

            def _answer(self, code: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.slack_api_url = f"http://127.0.0.1:{port}/api/"
        self.pagerduty_url = f"http://127.0.0.1:{port}/v2/enqueue"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _failing(self, name: str) -> bool:
        with self.lock:
            if self.fail_next[name] > 0:
                self.fail_next[name] -= 1
                return True
            return False

    def _slack(self, handler, raw: bytes) -> None:
        if self._failing("slack"):
            return handler._answer(500, {"ok": False, "error": "internal_error"})
        if handler.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            self.refused.append(("slack", "token"))
            return handler._answer(200, {"ok": False, "error": "invalid_auth"})
        message = json.loads(raw)
        if message.get("channel") != SLACK_CHANNEL or not message.get("text"):
            self.refused.append(("slack", message))
            return handler._answer(200, {"ok": False, "error": "channel_not_found"})
        with self.changed:
            ts = f"1700000000.{len(self.slack) + 1:06d}"
            self.slack.append({**message, "ts": ts})
            self.changed.notify_all()
        handler._answer(200, {"ok": True, "channel": SLACK_CHANNEL, "ts": ts, "message": message})

    def _pagerduty(self, handler, raw: bytes) -> None:
        if self._failing("pagerduty"):
            return handler._answer(500, {"status": "error", "message": "try again"})
        body = json.loads(raw)
        problems = pagerduty_problems(body)
        if problems:
            self.refused.append(("pagerduty", problems))
            return handler._answer(
                400, {"status": "invalid event", "message": "Event object is invalid",
                      "errors": problems}
            )  # fmt: skip
        with self.changed:
            self.pagerduty.append(body)
            self.changed.notify_all()
        handler._answer(
            202, {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}
        )

    def actions(self) -> list[tuple[str, str]]:
        """PagerDuty's (event_action, dedup_key) in order."""
        return [(e["event_action"], e["dedup_key"]) for e in self.pagerduty]

    def wait_for(self, condition, timeout_s: float = 60) -> None:
        """Block until `condition(self)` holds (checked on every message received)."""
        with self.changed:
            if not self.changed.wait_for(lambda: condition(self), timeout=timeout_s):
                raise AssertionError(
                    f"timed out: slack={[m['text'][:80] for m in self.slack]} "
                    f"pagerduty={self.actions()} refused={self.refused}"
                )

    def __enter__(self) -> AlertReceivers:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def receivers() -> Iterator[AlertReceivers]:
    with AlertReceivers() as server:
        yield server
