from __future__ import annotations

from dagster import ConfigurableResource

from export_pipeline.clips.download import DownloadPolicy


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
