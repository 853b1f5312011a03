"""`mc` of the MinIO stand-in: the commands docker/minio/setup.sh and compose's healthcheck
use, against the moto S3 server (s3server.py).

    mc alias set NAME URL ACCESS_KEY SECRET_KEY
    mc mb [--ignore-existing] NAME/BUCKET
    mc anonymous set none NAME/BUCKET      (buckets are private anyway: no policy is set)
    mc admin user add NAME ACCESS_KEY SECRET_KEY
    mc admin policy attach NAME POLICY --user ACCESS_KEY
    mc admin user info NAME ACCESS_KEY
    mc ready NAME

moto checks no credentials, so the `admin` commands only record the user and its policy in
this container (they are accepted so the set-up script runs unchanged). Any other command
fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

CONFIG = Path(os.environ.get("MC_CONFIG_DIR", Path.home() / ".mc")) / "stand-in.json"


def _load() -> dict:
    return json.loads(CONFIG.read_text()) if CONFIG.exists() else {"aliases": {}, "users": {}}


def _save(config: dict) -> None:
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(json.dumps(config))


def _alias(config: dict, name: str) -> dict:
    if name in config["aliases"]:
        return config["aliases"][name]
    if name == "local":  # inside the server's own container (the healthcheck)
        return {"url": "http://127.0.0.1:9000", "access_key": "x", "secret_key": "x"}
    sys.exit(f"mc stand-in: unknown alias {name}")


def _client(alias: dict):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=alias["url"],
        region_name="us-east-1",
        aws_access_key_id=alias["access_key"],
        aws_secret_access_key=alias["secret_key"],
    )


def main(argv: list[str]) -> int:
    config = _load()
    words = [a for a in argv if not a.startswith("--")]
    flags = [a for a in argv if a.startswith("--")]
    match words:
        case ["alias", "set", name, url, access_key, secret_key]:
            config["aliases"][name] = {
                "url": url,
                "access_key": access_key,
                "secret_key": secret_key,
            }
            _save(config)
            print(f"Added `{name}` successfully.")
        case ["mb", target]:
            name, _, bucket = target.partition("/")
            client = _client(_alias(config, name))
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket in existing:
                if "--ignore-existing" not in flags:
                    print(f"mc: bucket {bucket} exists", file=sys.stderr)
                    return 1
            else:
                client.create_bucket(Bucket=bucket)
            print(f"Bucket created successfully `{target}`.")
        case ["anonymous", "set", "none", target]:
            name, _, bucket = target.partition("/")
            _client(_alias(config, name)).head_bucket(Bucket=bucket)
            print(f"Access permission for `{target}` is set to `private`")
        case ["admin", "user", "add", name, access_key, _secret]:
            _alias(config, name)
            config["users"].setdefault(access_key, [])
            _save(config)
            print(f"Added user `{access_key}` successfully.")
        case ["admin", "policy", "attach", name, policy, access_key]:
            _alias(config, name)
            config["users"].setdefault(access_key, []).append(policy)
            _save(config)
            print(f"Attached Policies: [{policy}] To User: {access_key}")
        case ["admin", "user", "info", name, access_key]:
            _alias(config, name)
            policies = ",".join(config["users"].get(access_key, []))
            print(f"AccessKey: {access_key}\nPolicyName: {policies}")
        case ["ready", name]:
            url = _alias(config, name)["url"]
            for _ in range(30):
                try:
                    urllib.request.urlopen(url + "/", timeout=2)
                    print(f"The cluster `{name}` is ready")
                    return 0
                except urllib.error.HTTPError:  # an S3 error document: it answers
                    print(f"The cluster `{name}` is ready")
                    return 0
                except OSError:
                    time.sleep(1)
            return 1
        case _:
            print(f"mc stand-in: unsupported command: {' '.join(argv)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
