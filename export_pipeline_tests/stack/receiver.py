"""The completion-webhook receiver of the stack test: a container on the stack's network
(`http://webhook:8080/hook`) that answers 200 and appends each delivery, raw body and
headers, to /srv/deliveries.jsonl for the test to verify. Standard library only (it runs
in the user-code image with `python /srv/receiver.py`)."""

import base64
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "body": base64.b64encode(body).decode(),
        }
        with open("/srv/deliveries.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Receiver).serve_forever()
