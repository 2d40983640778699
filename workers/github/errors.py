"""The one translation of the GitHub feed's ``requests`` exceptions into meshops'.

The feed asks GitHub with ``requests``: no answer is a ``ConnectionError`` / ``Timeout``, and
an error status becomes an ``HTTPError`` (``raise_for_status``) whose ``response`` is GitHub's.
GitHub's REST API says when to come back (docs.github.com, "Rate limits for the REST API"):
a secondary rate limit answers 403 or 429 with ``Retry-After``; the primary one 403 or 429
with ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` (Unix seconds).

Temporary (:class:`TemporaryError`, ``delay_s`` = ``Retry-After``, else the seconds until
``X-RateLimit-Reset``): no answer, rate limits, 5xx. Permanent (:class:`PermanentError`):
any other status (404: a wrong ``releases.feed_url``; 401/403: a token without access), with
GitHub's own ``message``.
"""

from __future__ import annotations

import time

import requests

from workers.retry_after import retry_after_s
from workflows.errors import PermanentError, TemporaryError


def _rate_limit_wait(response: requests.Response, now: float) -> float | None:
    """Seconds until GitHub lifts its rate limit, or None if this is not a rate limit."""
    headers = response.headers
    retry = retry_after_s(headers, now)
    if retry or "Retry-After" in headers:
        return retry
    if response.status_code == 429 or headers.get("X-RateLimit-Remaining") == "0":
        try:
            return max(0.0, float(headers.get("X-RateLimit-Reset", "")) - now)
        except ValueError:
            return 0.0
    return None


def translate_github_error(exc: requests.RequestException, what: str,
                           now: float | None = None) -> TemporaryError | PermanentError:
    """A ``requests`` exception of a GitHub request as a meshops error.

    Args:
        exc: what ``requests`` raised (``raise_for_status`` for an error status).
        what: the request, for people and logs: ``"reading the AKS releases"``.
        now: the current Unix time, to turn ``X-RateLimit-Reset`` into a wait.

    Returns:
        :class:`TemporaryError` for no answer, a rate limit (``delay_s``: ``Retry-After`` or
        until ``X-RateLimit-Reset``) and 5xx; else :class:`PermanentError` with the status
        and GitHub's ``message``.
    """
    now = time.time() if now is None else now
    response = exc.response
    if response is None:
        return TemporaryError(f"{what}: GitHub unreachable ({type(exc).__name__}: {exc})")
    status = response.status_code
    try:
        body = response.json()
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
    except ValueError:
        message = ""
    said = f"{status} {response.reason or ''}".strip() + (f": {message}" if message else "")
    if status in (403, 429):
        wait = _rate_limit_wait(response, now)
        if wait is not None:
            return TemporaryError(f"{what}: GitHub rate limit ({said})", wait)
    if status >= 500:
        return TemporaryError(f"{what}: GitHub answered {said}", retry_after_s(response.headers,
                                                                              now))
    return PermanentError(f"{what}: GitHub refused it ({said})")
