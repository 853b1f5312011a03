"""The resources every export uses: the app database, object storage, FFmpeg and the clip
downloads. Each field is a setting, declared once here (`defs.config.setting`): its
default, its environment variable and what it means. Defaults that belong to a lower
layer's own types (the download policy, the FFmpeg limits) are read from those types.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import PrivateAttr, field_validator

from export_pipeline.defs.config import FromEnv, env_of, setting
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.http import DownloadPolicy
from export_pipeline.io.storage.base import MAX_URL_EXPIRY_SECONDS, MiB, Storage
from export_pipeline.io.storage.local import LocalStorage
from export_pipeline.media.encoding import DEFAULT_PRESET
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.inputs import MAX_INPUT_PIXELS, MAX_INPUT_SIDE
from export_pipeline.media.loudness import DEFAULT_LOUDNESS_LUFS
from export_pipeline.media.runner import Limits

BACKENDS = ("local", "s3")
_POLICY = DownloadPolicy()
_LIMITS = Limits()


class AppDatabase(FromEnv, ConfigurableResource):
    """The app's database holding `export_requests` (SQLite file or PostgreSQL URL). A
    PostgreSQL password belongs in PGPASSWORD (read by libpq), not in the URL."""

    url: str = setting(
        None, "EXPORT_DB_URL", "`postgresql+psycopg2://export@db:5432/app` (password in "
        "`PGPASSWORD`, never in the URL); default `sqlite:///$EXPORT_PIPELINE_HOME/app.db`"
    )  # fmt: skip
    heartbeat_s: float = setting(
        15.0, "EXPORT_HEARTBEAT_S", "how often a running step refreshes its row's `updated_at`"
    )

    def store(self) -> RequestStore:
        return RequestStore.from_url(self.url)


class StorageResource(FromEnv, ConfigurableResource):
    """Where the pipeline keeps clips, manifests and videos; `open()` returns the `Storage`.
    S3 credentials are not settings: boto3 finds them in the standard AWS variables, shared
    config files or the instance/task role."""

    backend: str = setting("local", "EXPORT_STORAGE_BACKEND", "`local` or `s3`")
    local_root: str | None = setting(
        None, "EXPORT_STORAGE_ROOT", "local storage directory; default "
        "`$EXPORT_PIPELINE_HOME/storage`"
    )  # fmt: skip
    s3_bucket: str | None = setting(None, "EXPORT_S3_BUCKET", "`exports` (required for `s3`)")
    s3_prefix: str = setting("", "EXPORT_S3_PREFIX", "`prod/`: keys are placed under it")
    s3_endpoint_url: str | None = setting(
        None, "EXPORT_S3_ENDPOINT_URL", "`http://minio:9000` (MinIO, R2, any S3 API); AWS if unset"
    )
    s3_region: str | None = setting(
        None, "EXPORT_S3_REGION", "`eu-west-1` (or `AWS_REGION`); boto3's default if unset",
        aliases=("AWS_REGION",),
    )  # fmt: skip
    url_expiry_seconds: int = setting(
        MAX_URL_EXPIRY_SECONDS, "EXPORT_URL_EXPIRY_SECONDS",
        "lifetime of presigned `video_url`s (at most 7 days, SigV4's limit)",
    )  # fmt: skip
    quota_mb: float = setting(
        0, "EXPORT_STORAGE_QUOTA_MB", "refuse to publish when storage would hold more than "
        "this (0: no quota); `storage_below_quota` (asset check of `export_metrics`, hourly) "
        "warns from 80 % of it",
    )  # fmt: skip
    multipart_threshold_mb: int = 64  # files at least this big are uploaded in parts
    create_bucket: bool = False  # create the bucket if missing (development and tests)

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        return value.strip().lower()

    # Built on first use; Storage objects are thread-safe (boto3 clients are).
    _storage: Storage | None = PrivateAttr(default=None)

    @property
    def quota_bytes(self) -> int:
        return int(self.quota_mb * MiB)

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
            # boto3 only for S3 storage: its import is ~0.1 s of every run worker's start.
            from export_pipeline.io.storage.s3 import S3Storage, make_s3_client

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


class MediaTools(FromEnv, ConfigurableResource):
    """Where FFmpeg is, how it encodes and what it may cost; where steps keep scratch files."""

    ffmpeg: str = setting("ffmpeg", "EXPORT_FFMPEG", "path to the ffmpeg binary")
    ffprobe: str = setting("ffprobe", "EXPORT_FFPROBE", "path to the ffprobe binary")
    x264_preset: str = setting(
        DEFAULT_PRESET, "EXPORT_X264_PRESET", "x264 speed/quality trade-off, chosen by the "
        "benchmark (export_pipeline_tests/benchmarks); outputs above 30 fps are encoded two "
        "presets slower (`fast` by default), which keeps fast pans' quality",
    )  # fmt: skip
    max_fps: int = setting(
        60, "EXPORT_MAX_FPS", "the output frame rate is the fastest clip's, capped here"
    )
    loudness_lufs: float = setting(
        DEFAULT_LOUDNESS_LUFS, "EXPORT_LOUDNESS_LUFS", "the integrated loudness (EBU R128) "
        "every clip is brought to, unless the request sets `audio_normalize` to false",
    )  # fmt: skip
    segment_workers: int = setting(
        0, "EXPORT_SEGMENT_WORKERS", "segments encoded at once inside one step; 0 (auto): 2 "
        "with 2 CPUs or more, else 1 (each FFmpeg has its own memory limit: budget twice "
        "`EXPORT_FFMPEG_MEMORY_MB`)",
    )  # fmt: skip
    max_segment_s: float = setting(
        10.0, "EXPORT_SEGMENT_MAX_S", "a clip longer than this is cut into chunks of at most "
        "this length (on the output's frame grid), each a segment of its own, so one long "
        "clip spreads over workers too; 0: never cut",
    )  # fmt: skip
    segments_per_step: int | None = setting(
        None, "EXPORT_SEGMENTS_PER_STEP", "segments one segment step renders: `auto` is all "
        "of them in process (one step keeps two FFmpeg busy) and one under any other "
        "executor; a number forces it (where a step starts slowly, a container or a pod, "
        "about segments / workers)", none_when=("auto", "0"),
    )  # fmt: skip
    stream_sources_mb: float = setting(
        256, "EXPORT_STREAM_SOURCES_MB", "with S3 storage, a segment step reads an archived "
        "clip larger than this over HTTP (a presigned URL, range requests: only its span) "
        "instead of downloading all of it; 0: always download. Local clips are read in place",
    )  # fmt: skip
    work_dir: str | None = setting(
        None, "EXPORT_WORK_DIR", "scratch space for downloads and encoding (removed after "
        "each step); default `$EXPORT_PIPELINE_HOME/scratch`. One per deployment: a step "
        "clears its own killed attempts' leftovers there by name, and another deployment's "
        "requests have the same names",
    )  # fmt: skip
    ffmpeg_timeout_s: float = setting(
        3600.0, "EXPORT_FFMPEG_TIMEOUT_S", "one FFmpeg command running longer fails (and is "
        "retried)",
    )  # fmt: skip
    memory_mb: int = setting(
        _LIMITS.memory_mb, "EXPORT_FFMPEG_MEMORY_MB", "data segment (RLIMIT_DATA) each "
        "FFmpeg/ffprobe process may use; 0: no limit. Over it a clip fails with `ran out of "
        "memory`, without retries. 3 GB holds a 4k encode with up to 12 x264 threads",
    )  # fmt: skip
    cpu_s: int = setting(
        _LIMITS.cpu_s, "EXPORT_FFMPEG_CPU_S", "CPU time (all threads) each FFmpeg/ffprobe "
        "process may use; 0: no limit",
    )  # fmt: skip
    max_input_side: int = setting(
        MAX_INPUT_SIDE, "EXPORT_MAX_INPUT_SIDE", "the largest clip frame accepted, per side "
        "(pixels); checked at probe time and by the decoder itself",
    )  # fmt: skip
    max_input_pixels: int = setting(
        MAX_INPUT_PIXELS, "EXPORT_MAX_INPUT_PIXELS", "the largest clip frame accepted, in "
        "pixels (8192x4320, DCI 8K)",
    )  # fmt: skip

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


class ClipDownloads(FromEnv, ConfigurableResource):
    """How clips are fetched from the CDN: limits, timeouts and which URLs are allowed."""

    concurrency: int = setting(4, "EXPORT_DOWNLOAD_CONCURRENCY", "clips downloaded at once")
    max_clip_mb: int = setting(
        _POLICY.max_bytes // MiB, "EXPORT_MAX_CLIP_MB", "size limit per clip"
    )
    max_total_duration_s: float = setting(
        600.0, "EXPORT_MAX_DURATION_S", "total length limit of an export (10 minutes)"
    )
    connect_timeout_s: float = setting(
        _POLICY.connect_timeout_s, "EXPORT_CONNECT_TIMEOUT_S", "download connect timeout"
    )
    read_timeout_s: float = setting(
        _POLICY.read_timeout_s, "EXPORT_READ_TIMEOUT_S", "download read timeout"
    )
    deadline_s: float = setting(
        _POLICY.deadline_s, "EXPORT_DOWNLOAD_DEADLINE_S", "the most one clip download may "
        "take, redirects and stalls included (over it: retried)",
    )  # fmt: skip
    min_kbps: float = setting(
        _POLICY.min_kbps, "EXPORT_MIN_DOWNLOAD_KBPS", "a download slower than this average "
        "(KB/s) once the grace period has passed is cut and retried (0: off)",
    )  # fmt: skip
    min_kbps_grace_s: float = setting(
        _POLICY.min_kbps_grace_s, "EXPORT_MIN_DOWNLOAD_GRACE_S",
        "seconds a download may be slow before the minimum speed applies",
    )  # fmt: skip
    max_request_mb: float = setting(
        8192, "EXPORT_MAX_REQUEST_MB", "the most the clips of one export may add up to, "
        "archived clips included (over it: failed; 0: no limit)",
    )  # fmt: skip
    allow_http: bool = setting(
        _POLICY.allow_http, "EXPORT_ALLOW_HTTP", "allow plain-HTTP clip URLs (local testing: "
        "the demo, your own clips served on loopback)",
    )  # fmt: skip
    allow_private_hosts: bool = setting(
        _POLICY.allow_private_hosts, "EXPORT_ALLOW_PRIVATE_HOSTS", "allow clip URLs that "
        "resolve to loopback/private/link-local addresses",
    )  # fmt: skip
    allowed_hosts: list[str] = setting(
        [], "EXPORT_ALLOWED_HOSTS", "`replicate.delivery,cdn.example.com`: only these hosts "
        "(empty: any public host)",
    )  # fmt: skip
    private_networks: list[str] = setting(
        [], "EXPORT_ALLOWED_PRIVATE_NETWORKS", "`127.0.0.0/8`: private networks clip URLs "
        "may use anyway (finer than `EXPORT_ALLOW_PRIVATE_HOSTS`)",
    )  # fmt: skip

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [host.strip().lower() for host in value]

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MiB)

    def policy(self) -> DownloadPolicy:
        return DownloadPolicy(
            max_bytes=self.max_clip_mb * MiB,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            deadline_s=self.deadline_s,
            min_kbps=self.min_kbps,
            min_kbps_grace_s=self.min_kbps_grace_s,
            allow_http=self.allow_http,
            allow_private_hosts=self.allow_private_hosts,
            allowed_hosts=tuple(self.allowed_hosts),
            private_networks=tuple(self.private_networks),
            hints=self._hints(),
        )

    @classmethod
    def _hints(cls) -> dict[str, str]:
        """What to set to allow what a download refused (named by the settings)."""
        http, private, hosts, networks = (
            env_of(cls, name)
            for name in ("allow_http", "allow_private_hosts", "allowed_hosts", "private_networks")
        )
        return {
            "allow_http": f"for local testing, plain HTTP is allowed by {http}=true",
            "private_networks": f"for local testing, add its network to {networks} (e.g. "
            f"127.0.0.0/8 for loopback) or set {private}=true",
            "allowed_hosts": f"the allowed hosts are {hosts}",
        }
