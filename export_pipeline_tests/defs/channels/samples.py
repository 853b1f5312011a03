"""An alert to send through every channel in the channel tests."""

from export_pipeline.defs.channels import Alert


def sample_alert() -> Alert:
    return Alert(
        title="Export success rate below target",
        summary="success rate 50.0 % (target 95 %)",
        severity="warning",
        component="export_metrics",
        kind="kpi_check",
        lines=["Requests: exp-3 (<https://ui/runs/abc|run abc>)",
               "clip https://cdn.example/a.mp4?token=SECRET&X-Amz-Signature=abc"],
        links=[("Checks in Dagster", "https://ui/assets/export_metrics?view=checks")],
        details={"password": "hunter2", "failures_by_cause": {"ffmpeg": 2}},
    )  # fmt: skip
