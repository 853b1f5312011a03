"""`minio server DIR [--address :9000] [--console-address ...]` of the MinIO stand-in.

moto's S3 server (in memory), with its buckets and objects written to DIR/state.pickle when
the container is stopped (SIGTERM, SIGINT) and every few seconds after a change, and read
back at start, so a restart keeps what a MinIO volume would keep. A `docker kill` loses the
writes of the last seconds. No console: `--console-address` is accepted and ignored.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

from moto.s3.models import s3_backends
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

SNAPSHOT_EVERY_S = 5.0


def _parse(argv: list[str]) -> tuple[Path, int]:
    if not argv or argv[0] != "server":
        sys.exit(f"minio stand-in: only `minio server DIR` is supported, got {argv}")
    data, port = None, 9000
    args = iter(argv[1:])
    for arg in args:
        if arg == "--address":
            port = int(next(args).rsplit(":", 1)[-1])
        elif arg == "--console-address":
            next(args)
        elif not arg.startswith("-") and data is None:
            data = Path(arg)
    return data or Path("/data"), port


def _state() -> dict:
    return {
        acct: {region: b.buckets for region, b in regions.items()}
        for acct, regions in s3_backends.items()
    }


def _fingerprint() -> tuple:
    keys = []
    for regions in s3_backends.values():
        for backend in regions.values():
            for name, bucket in backend.buckets.items():
                keys.append(
                    (
                        name,
                        len(bucket.keys),
                        len(bucket.multiparts),
                        max(
                            (k.last_modified.timestamp() for k in bucket.keys.values()), default=0.0
                        ),
                    )
                )
    return tuple(sorted(keys))


def main() -> None:
    data, port = _parse(sys.argv[1:])
    data.mkdir(parents=True, exist_ok=True)
    snapshot = data / "state.pickle"
    lock = threading.Lock()
    if snapshot.exists():
        for acct, regions in pickle.loads(snapshot.read_bytes()).items():
            for region, buckets in regions.items():
                s3_backends[acct][region].buckets.update(buckets)
        print(f"minio stand-in: restored {snapshot}", flush=True)

    def save() -> None:
        with lock:
            tmp = snapshot.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(_state()))
            os.replace(tmp, snapshot)

    server = make_server(
        "0.0.0.0", port, DomainDispatcherApplication(create_backend_app), threaded=True
    )

    def stop(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def saver() -> None:
        last = _fingerprint()
        while True:
            time.sleep(SNAPSHOT_EVERY_S)
            try:
                now = _fingerprint()
                if now != last:
                    save()
                    last = now
            except Exception as exc:  # a bucket changing under us: next time
                print(f"minio stand-in: snapshot skipped: {exc}", flush=True)

    threading.Thread(target=saver, daemon=True).start()
    print(f"minio stand-in: moto S3 on :{port}, data in {data}", flush=True)
    server.serve_forever()
    save()
    print("minio stand-in: stopped, state saved", flush=True)


if __name__ == "__main__":
    main()
