"""Dagster resources: the app database, object storage, FFmpeg and clip downloads."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.http import DownloadPolicy
from export_pipeline.io.storage.base import Storage
from export_pipeline.io.storage.local import LocalStorage
from export_pipeline.io.storage.s3 import MiB, S3Storage, make_s3_client
from export_pipeline.media.encoding import DEFAULT_PRESET
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.inputs import MAX_INPUT_PIXELS, MAX_INPUT_SIDE
from export_pipeline.media.loudness import DEFAULT_LOUDNESS_LUFS
from export_pipeline.media.runner import Limits

BACKENDS = ("local", "s3")


class AppDatabase(ConfigurableResource):
    """The app's database holding `export_requests` (SQLite file or PostgreSQL URL).

    A PostgreSQL password belongs in PGPASSWORD (read by libpq), not in the URL.
    """

    url: str
    heartbeat_s: float = 15.0  # how often a running step touches its row's updated_at

    def store(self) -> RequestStore:
        return RequestStore.from_url(self.url)


class ClipDownloads(ConfigurableResource):
    """How clips are fetched from the CDN: limits, timeouts and which URLs are allowed."""

    concurrency: int = 4
    max_clip_bytes: int = 2 * 1024**3
    max_total_duration_s: float = 600.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    # Limits on what one download, and one export's downloads, may cost.
    deadline_s: float = 600.0
    min_kbps: float = 32.0
    min_kbps_grace_s: float = 10.0
    max_request_bytes: int = 8192 * 1024**2
    allow_http: bool = False
    allow_private_hosts: bool = False
    allowed_hosts: list[str] = []
    private_networks: list[str] = []

    def policy(self) -> DownloadPolicy:
        return DownloadPolicy(
            max_bytes=self.max_clip_bytes,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            deadline_s=self.deadline_s,
            min_kbps=self.min_kbps,
            min_kbps_grace_s=self.min_kbps_grace_s,
            allow_http=self.allow_http,
            allow_private_hosts=self.allow_private_hosts,
            allowed_hosts=tuple(h.lower() for h in self.allowed_hosts),
            private_networks=tuple(self.private_networks),
        )


class MediaTools(ConfigurableResource):
    """Where FFmpeg is and how it encodes; where steps keep their temporary files."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    x264_preset: str = DEFAULT_PRESET
    max_fps: int = 60
    segment_workers: int = 0  # segments encoded at once; 0: 2 with 2 CPUs or more, else 1
    max_segment_s: float = 10.0  # a longer clip is cut into chunks of at most this: 0, never
    segments_per_step: int = 1  # segments a segment step renders; 0: all of them
    # A segment step reads an archived clip larger than this (MB) over HTTP from S3,
    # seeking to its span, instead of downloading it whole; 0: always download.
    stream_sources_mb: float = 256
    loudness_lufs: float = DEFAULT_LOUDNESS_LUFS  # where audio_normalize brings every clip
    work_dir: str | None = None
    ffmpeg_timeout_s: float = 3600.0  # per FFmpeg command: a hung encoder fails, then retries
    # Per FFmpeg/ffprobe process: data segment (MB) and CPU seconds; 0: no limit.
    memory_mb: int = 3072
    cpu_s: int = 7200
    # The largest clip frame accepted: pixels a side, and pixels in all (8192x4320).
    max_input_side: int = MAX_INPUT_SIDE
    max_input_pixels: int = MAX_INPUT_PIXELS

    def limits(self) -> Limits:
        """What one clip and each FFmpeg process on it may cost (see `Limits`)."""
        return Limits(
            memory_mb=self.memory_mb,
            cpu_s=self.cpu_s,
            max_side=self.max_input_side,
            max_pixels=self.max_input_pixels,
        )

    def runner(self) -> FFmpeg:
        """FFmpeg and FFprobe as configured: the binaries, the limits per process and the
        timeout per command."""
        return FFmpeg(
            ffmpeg=self.ffmpeg,
            ffprobe=self.ffprobe,
            limits=self.limits(),
            timeout_s=self.ffmpeg_timeout_s,
        )

    def temp_dir(self, prefix: str) -> tempfile.TemporaryDirectory:
        """A private scratch directory, removed when the step ends (even on failure or
        termination). Leftovers of an earlier attempt of the same step of the same
        partition, whose worker was killed before it could clean up, are removed first:
        attempts of one step never run at the same time."""
        base = Path(self.work_dir) if self.work_dir else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        for stale in base.glob(f"{prefix}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return tempfile.TemporaryDirectory(prefix=f"{prefix}-", dir=base)


class StorageResource(ConfigurableResource):
    """Where the pipeline keeps clips, manifests and videos; `open()` returns the `Storage`.

    S3 credentials are not configuration: boto3 finds them in the standard AWS environment
    variables, shared config files or the instance/task role.
    """

    backend: str = Field(default="local", description="'local' or 's3'.")
    local_root: str | None = Field(
        default=None, description="Root directory of the local backend (required for it)."
    )
    s3_bucket: str | None = Field(default=None, description="Bucket (required for s3).")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket.")
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible server (MinIO, moto)."
    )
    s3_region: str | None = Field(default=None, description="Region of the bucket.")
    url_expiry_seconds: int = Field(
        default=7 * 24 * 3600, description="Lifetime of presigned URLs (at most 7 days)."
    )
    multipart_threshold_mb: int = Field(
        default=64, description="Files at least this big are uploaded in parts."
    )
    quota_bytes: int = Field(
        default=0, description="Most bytes the storage may hold (0: no quota), checked on publish."
    )
    create_bucket: bool = Field(
        default=False, description="Create the bucket if missing (development and tests)."
    )

    # Built on first use; Storage objects are thread-safe (boto3 clients are).
    _storage: Storage | None = PrivateAttr(default=None)

    def open(self) -> Storage:
        if self._storage is None:
            self._storage = self._build()
        return self._storage

    def _build(self) -> Storage:
        if self.backend == "local":
            if not self.local_root:
                raise ValueError("StorageResource: backend 'local' needs local_root")
            return LocalStorage(Path(self.local_root))
        if self.backend == "s3":
            if not self.s3_bucket:
                raise ValueError("StorageResource: backend 's3' needs s3_bucket")
            storage = S3Storage(
                make_s3_client(endpoint_url=self.s3_endpoint_url, region=self.s3_region),
                bucket=self.s3_bucket,
                prefix=self.s3_prefix,
                url_expiry_seconds=self.url_expiry_seconds,
                multipart_threshold=self.multipart_threshold_mb * MiB,
            )
            if self.create_bucket:
                storage.ensure_bucket()
            return storage
        raise ValueError(
            f"StorageResource: unknown backend {self.backend!r}; expected one of {BACKENDS}"
        )
