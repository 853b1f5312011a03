"""Keep secrets and signed URLs out of what leaves the pipeline: error events (Sentry), alert
messages (Slack, PagerDuty).

Two rules, applied to every string and every mapping, however deeply nested:
- a URL keeps its scheme, host and path; its query string (a presigned URL's signature, a
  CDN token) and fragment are cut, and a user name or password in it is dropped;
- a value under a secret-looking key (`password`, `token`, `secret`, `api_key`, `dsn`,
  `authorization`, `routing_key`, AWS keys, ...) is replaced, and so is anything that looks
  like a credential on its own (AWS access key ids, Slack tokens, bearer tokens, PEM private
  keys, `password=...`-style pairs in free text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FILTERED = "[Filtered]"

# Keys whose values are secrets whatever they hold. Matched on the key lower-cased with
# `-`, ` ` and `.` read as `_`; substrings count (`x_api_key`, `aws_secret_access_key`).
_SECRET_KEY = re.compile(
    r"passw(?:or)?d|passwd|pwd|secret|token|api_?key|apikey|access_?key|private_?key"
    r"|session_?key|credential|authorization|auth_?header|cookie|signature|dsn"
    r"|routing_?key|integration_?key|webhook_?url|x_amz_|sig$|^sig_|^key$"
)
# Keys that merely contain one of those words but are not secrets (kept readable).
_HARMLESS_KEY = re.compile(r"^(?:tokens_?used|token_?count|num_?tokens|dedup_?key)$")

# scheme://[userinfo@]host[:port][/path][?query][#fragment]
_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)"
    r"(?:(?P<userinfo>[^\s/@'\"<>]*)@)?"
    r"(?P<rest>[^\s?#'\"<>|]*)"
    r"(?P<query>\?[^\s#'\"<>|]*)?"
    r"(?P<fragment>#[^\s'\"<>|]*)?"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks (private keys, certificates with keys)
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        FILTERED,
    ),
    # AWS access key ids (long-term AKIA, temporary ASIA, and the other documented prefixes)
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"), FILTERED),
    # Slack tokens (bot, user, app, config, legacy webhook secrets)
    (re.compile(r"\bxox[abeoprs]-[0-9A-Za-z-]{6,}"), FILTERED),
    (re.compile(r"\bxapp-[0-9A-Za-z-]{6,}"), FILTERED),
    # JSON web tokens
    (re.compile(r"\beyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}"), FILTERED),
    # Authorization: Bearer/Basic/Token <credential>
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[0-9A-Za-z._~+/=-]{8,}"), rf"\1 {FILTERED}"),
    # key=value / key: value pairs in free text (log lines, exception messages)
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9]+[_-])*(?:passw(?:or)?d|passwd|pwd|secret|token|api[_-]?key"
            r"|access[_-]?key|secret[_-]?key|private[_-]?key|dsn|signature|routing[_-]?key"
            r"|credentials?)(?:[_-][a-z0-9]+)*)([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&'\"]+)"
        ),
        rf"\1\2{FILTERED}",
    ),
)


def _url(match: re.Match[str]) -> str:
    scheme, rest = match["scheme"], match["rest"]
    out = scheme + rest
    if match["query"]:
        out += "?" + FILTERED
    return out


def scrub_text(text: str) -> str:
    """`text` without URL query strings, URL credentials and credential-looking values."""
    if not text:
        return text
    text = _URL.sub(_url, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = re.sub(r"[-\s.]", "_", key.strip().lower())
    return bool(_SECRET_KEY.search(name)) and not _HARMLESS_KEY.match(name)


def scrub(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` (strings, mappings, lists, tuples; anything else as is) with every
    secret-looking key's value replaced and every string passed through `scrub_text`."""
    if _depth > 64:  # a pathological nesting: drop it rather than recurse for ever
        return FILTERED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return {
            key: (
                FILTERED
                if is_secret_key(key) and item not in (None, "")
                else scrub(item, _depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [scrub(item, _depth + 1) for item in value]
        # Sentry sends headers and cookies as [name, value] pairs: judge the name.
        if len(items) == 2 and is_secret_key(items[0]) and items[1] not in (None, ""):
            items[1] = FILTERED
        return items if isinstance(value, list) else tuple(items)
    return value
