"""Where alerts go. A channel is one file here (its settings, how it sends) and one line in
`CHANNELS`; `defs.notify.alerts` decides what to say and when."""

from export_pipeline.defs.channels.base import Alert, AlertChannel, AlertDeliveryError, Delivery
from export_pipeline.defs.channels.pagerduty import PagerDutyEvents
from export_pipeline.defs.channels.slack import SlackAlerts

CHANNELS: tuple[type[AlertChannel], ...] = (
    SlackAlerts,
    PagerDutyEvents,
)

__all__ = ["CHANNELS", "Alert", "AlertChannel", "AlertDeliveryError", "Delivery"]
