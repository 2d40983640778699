"""The one translation of slack_sdk's exceptions into meshops'.

slack_sdk raises ``SlackApiError`` for an answer with ``"ok": false`` or a status other than
200 (its ``response`` has the status, the headers and Slack's ``error`` code), and lets
``OSError`` through (``urllib.error.URLError``, timeouts) when Slack did not answer; by then
its own retry handlers (:func:`workers.slack.client.make_client`) have already retried
dropped connections (and, in the bot, a short rate limit).

- :class:`TemporaryError` (``delay_s`` = Slack's ``Retry-After``): a 5xx, Slack's own
  ``service_unavailable`` / ``fatal_error`` / ``internal_error`` / ``request_timeout``, no
  answer;

  - :class:`SlackRateLimited`: ``ratelimited`` (429): Slack did nothing; wait
    ``Retry-After``;
  - :class:`SlackOverBudget`: not Slack's answer but meshops' own
    (:class:`workers.slack.budget.SlackBudget`): the call was not made; wait ``delay_s``.
- :class:`PermanentError` → :class:`SlackRefused`: every other error code
  (``channel_not_found``, ``not_in_channel``, ``missing_scope``, ``invalid_auth``...), named
  with the method, as in Slack's docs of each method.
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from workers.retry_after import retry_after_s
from workflows.errors import PermanentError, TemporaryError

#: what slack_sdk raises that we translate (anything else is a bug and propagates)
SLACK_ERRORS = (SlackApiError, OSError)

#: Slack error codes that say "try again later" (https://api.slack.com/methods, "Errors")
TEMPORARY_CODES = frozenset({"ratelimited", "service_unavailable", "fatal_error",
                             "internal_error", "request_timeout"})


class SlackRateLimited(TemporaryError):
    """Slack answered 429 ``ratelimited``: nothing was done; ``delay_s`` its
    ``Retry-After``."""

    def __init__(self, message: str, delay_s: float, method: str) -> None:
        super().__init__(message, delay_s)
        self.method = method


class SlackOverBudget(TemporaryError):
    """The workspace's Slack budget is spent for ``delay_s`` seconds: the call was not
    made (:mod:`workers.slack.budget`)."""


class SlackRefused(PermanentError):
    """Slack refused a call for good; ``code`` is Slack's error code (``not_in_channel``)."""

    def __init__(self, message: str, method: str, code: str) -> None:
        super().__init__(message)
        self.method = method
        self.code = code


def translate_slack_error(exc: SlackApiError | OSError, method: str
                          ) -> TemporaryError | PermanentError:
    """A slack_sdk exception as a meshops error naming the Web API method.

    Args:
        exc: what the ``WebClient`` raised.
        method: the Web API method, ``chat.postMessage``.

    Returns:
        :class:`SlackRateLimited` for a 429 (``delay_s``: Slack's ``Retry-After``);
        :class:`TemporaryError` (``delay_s``: ``Retry-After``, or 0) for Slack's outages and
        no answer; else :class:`PermanentError` with Slack's error code
        (and the scope it needs, for ``missing_scope``).
    """
    if not isinstance(exc, SlackApiError):
        return TemporaryError(f"Slack {method}: Slack unreachable ({exc})")
    response = exc.response
    data = response.data if response is not None and isinstance(response.data, dict) else {}
    status = response.status_code if response is not None else 0
    code = str(data.get("error") or (f"HTTP {status}" if status else "unknown"))
    headers = response.headers if response is not None else None
    if code == "ratelimited" or status == 429:
        return SlackRateLimited(f"Slack {method}: {code}", retry_after_s(headers), method)
    if code in TEMPORARY_CODES or status >= 500:
        return TemporaryError(f"Slack {method}: {code}", retry_after_s(headers))
    detail = ""
    if data.get("needed"):
        detail = f" (needs the {data['needed']} scope; reinstall the app with it)"
    messages = (data.get("response_metadata") or {}).get("messages") or []
    if messages:
        detail += f": {'; '.join(str(m) for m in messages)[:300]}"
    return SlackRefused(f"Slack {method} refused: {code}{detail}", method, code)
