"""How long a service asked us to wait: its ``Retry-After`` header, read one way for every SDK.

Each adapter's ``errors.py`` passes the headers of the failed response here and puts the
result in ``TemporaryError.delay_s`` (0 when the service said nothing).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

#: milliseconds headers of Azure services, preferred to ``Retry-After`` when present
#: (azure-core's own retry policy reads the same three)
_MS_HEADERS = ("retry-after-ms", "x-ms-retry-after-ms")


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if str(key).lower() == name:
            if isinstance(value, list | tuple):  # some clients keep every value of a header
                value = value[0] if value else None
            return None if value is None else str(value).strip()
    return None


def retry_after_s(headers: Mapping[str, Any] | None, now: float | None = None) -> float:
    """Seconds to wait before trying again, from a response's headers.

    Args:
        headers: the response headers, any case (a ``dict``, requests' or urllib3's header
            dicts); None when there was no response.
        now: the current Unix time, for an HTTP-date ``Retry-After`` (default: now).

    Returns:
        ``retry-after-ms`` / ``x-ms-retry-after-ms`` in seconds, else ``Retry-After`` as
        delta-seconds or an HTTP-date (RFC 9110 §10.2.3) from ``now``; 0.0 when absent or
        unreadable. Never negative.
    """
    if not headers:
        return 0.0
    for name in _MS_HEADERS:
        value = _header(headers, name)
        if value:
            try:
                return max(0.0, float(value) / 1000)
            except ValueError:
                pass
    value = _header(headers, "retry-after")
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:  # an HTTP-date is GMT
        return 0.0
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
