"""What operators and their tools see: error events (Sentry), JSON logs, secret scrubbing."""
