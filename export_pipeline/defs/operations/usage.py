"""Storage usage: bytes and objects by kind, and the users whose exports hold the most.

Read in one listing pass with sizes (`Storage.list_sizes`: a stat per file locally, the
ListObjectsV2 pages on S3), then one query for the owners of the exports found. Kinds
follow the storage layout:

| kind | keys |
| --- | --- |
| `videos` | `videos/exp-<id>.mp4`, `.webm` (published videos) |
| `posters` | `videos/exp-<id>.jpg` |
| `clips` | `clips/sha256/...` (archived clips) |
| `clip_index` | `clips/by-url/...` (which archived clip a URL gave) |
| `soundtracks` | `soundtracks/sha256/...` (archived soundtracks) |
| `segments` | `segments/<clip sha256>/...` (rendered segment cache: video and `.wav` parts) |
| `work` | `work/exp-<id>/...` (manifests, encode records, audio track, work copies) |
| `other` | anything else (e.g. Dagster's step outputs when the S3 prefix is empty) |

Per user: the bytes of their exports' videos, posters and work files (by the request's
`user_id`). Archived clips, soundtracks and segments are stored once per content and
shared by every export (of any user) that used the same file, so they are counted by
kind only, never per user: attributing them would take reading every manifest and
would count a shared clip several times. A request id whose row no longer exists
counts under `(unknown)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from export_pipeline.domain.layout import KINDS, classify_key
from export_pipeline.domain.values import human_bytes
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import Storage

USER_KINDS: tuple[str, ...] = ("videos", "posters", "work")  # attributed to a user
TOP_USERS = 10
UNKNOWN_USER = "(unknown)"
QUOTA_WARN_SHARE = 0.80  # the asset check warns from 80 % of EXPORT_STORAGE_QUOTA_MB


@dataclass
class UserUsage:
    user_id: str
    exports: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USER_KINDS, 0))

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "bytes": self.total,
            **{f"{kind}_bytes": n for kind, n in self.bytes.items()},
            "exports": self.exports,
        }


@dataclass
class StorageUsage:
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    objects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    users: list[UserUsage] = field(default_factory=list)  # the most first, all of them
    quota_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    @property
    def total_objects(self) -> int:
        return sum(self.objects.values())

    @property
    def used_share(self) -> float | None:
        return self.total_bytes / self.quota_bytes if self.quota_bytes else None

    def top_users(self, n: int = TOP_USERS) -> list[dict[str, Any]]:
        return [user.as_dict() for user in self.users[:n]]

    def markdown(self, n: int = TOP_USERS) -> str:
        share = self.used_share
        quota = (
            f"{human_bytes(self.total_bytes)} of the {human_bytes(self.quota_bytes)} quota "
            f"({100 * share:.1f} %)"
            if share is not None and self.quota_bytes
            else f"{human_bytes(self.total_bytes)} (no quota set)"
        )
        lines = [f"Storage: {quota}, {self.total_objects} objects", ""]
        lines += ["| kind | bytes | objects |", "|---|---|---|"]
        lines += [
            f"| {kind} | {human_bytes(self.bytes[kind])} | {self.objects[kind]} |" for kind in KINDS
        ]
        lines += ["", "Top users (videos, posters, work; shared clips, soundtracks and "
                  "segments are counted by kind only)", ""]  # fmt: skip
        lines += [
            "| user | bytes | videos | posters | work | exports |",
            "|---|---|---|---|---|---|",
        ]
        for user in self.users[:n]:
            b = user.bytes
            lines.append(
                f"| {user.user_id} | {human_bytes(user.total)} | {human_bytes(b['videos'])} | "
                f"{human_bytes(b['posters'])} | {human_bytes(b['work'])} | {user.exports} |"
            )
        if not self.users:
            lines.append("| (none) | | | | | |")
        return "\n".join(lines)


def usage_of(
    objects: Iterable[tuple[str, int]],
    owners: Any,
    quota_bytes: int | None = None,
) -> StorageUsage:
    """Usage from (key, size) pairs; `owners(request ids) -> {id: user_id}`."""
    usage = StorageUsage(quota_bytes=quota_bytes or None)
    by_request: dict[int, dict[str, int]] = {}
    for key, size in objects:
        kind, request_id = classify_key(key)
        usage.bytes[kind] += size
        usage.objects[kind] += 1
        if request_id is not None:
            sizes = by_request.setdefault(request_id, dict.fromkeys(USER_KINDS, 0))
            sizes[kind] += size
    users: dict[str, UserUsage] = {}
    known = owners(list(by_request)) if by_request else {}
    for request_id, sizes in by_request.items():
        user_id = known.get(request_id, UNKNOWN_USER)
        user = users.setdefault(user_id, UserUsage(user_id))
        user.exports += 1
        for kind, size in sizes.items():
            user.bytes[kind] += size
    usage.users = sorted(users.values(), key=lambda u: (-u.total, u.user_id))
    return usage


def storage_usage(
    storage: Storage, store: RequestStore | None, quota_bytes: int | None = None
) -> StorageUsage:
    """The usage of `storage` (one listing pass) with its exports' owners from `store`."""
    owners = store.owners if store is not None else (lambda ids: {})
    return usage_of(storage.list_sizes(), owners, quota_bytes)
