"""The one translation of the Prometheus adapter's exceptions into meshops'.

An answer other than 200 is raised as :class:`PrometheusAnswerError`, prometheus-api-client's
``PrometheusApiClientException`` in the words its ``custom_query`` uses (``HTTP Status Code
503 (b'...')``, the body being Prometheus' error object ``{"status": "error", "errorType":
"...", "error": "..."}``), with the answer's ``Retry-After``; ``requests``' exceptions come
through as they are (no answer, a body that is not JSON). Every one of them means the gate
could not measure: :class:`MetricsUnavailable`, whose verdict is ERROR (retried, then the run
pauses), with Prometheus' own status, error type and message, and the least wait it asked
for. So is an Entra token that azure-identity could not get for Azure Monitor managed
Prometheus (``AzureError``).
"""

from __future__ import annotations

import ast
import json
import re

import requests
from azure.core.exceptions import AzureError
from prometheus_api_client.exceptions import PrometheusApiClientException

from workers.retry_after import retry_after_s
from workflows.errors import MetricsUnavailable

#: what prometheus-api-client raises that we translate (anything else is a bug)
PROMETHEUS_ERRORS = (PrometheusApiClientException, requests.RequestException, AzureError)



class PrometheusAnswerError(PrometheusApiClientException):
    """An answer other than 200, in the client's words (``HTTP Status Code <status>
    (<body bytes>)``); ``retry_after_s``: its ``Retry-After``, seconds (0: none)."""

    def __init__(self, status: int, body: bytes, retry_after_s: float = 0.0):
        super().__init__(f"HTTP Status Code {status} ({body!r})")
        self.retry_after_s = retry_after_s


_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


def _prometheus_said(exc: PrometheusApiClientException) -> str:
    """``503 unavailable: <error>`` from the client's message, or the message itself."""
    m = _STATUS.match(str(exc))
    if not m:
        return str(exc)
    status, content = m.groups()
    try:
        body = ast.literal_eval(content)  # the client formats the body bytes with !r
        error = json.loads(body)
    except (ValueError, SyntaxError):
        return f"HTTP {status}"
    if isinstance(error, dict) and error.get("error"):
        return f"HTTP {status} {error.get('errorType', '')}: {error['error']}".replace("  ", " ")
    return f"HTTP {status}"


def translate_prometheus_error(
        exc: PrometheusApiClientException | requests.RequestException | AzureError,
        url: str) -> MetricsUnavailable:
    """A prometheus-api-client exception as :class:`MetricsUnavailable`.

    Args:
        exc: what a query raised (:class:`PrometheusAnswerError`, or requests' own), or
            the credential asked for a token.
        url: the Prometheus queried (no credentials in it).

    Returns:
        ``MetricsUnavailable("Prometheus at <url> could not be queried: <what it said>")``,
        its ``delay_s`` the ``Retry-After`` of an HTTP error response, else 0.
    """
    if isinstance(exc, AzureError):
        return MetricsUnavailable(f"Prometheus at {url}: no Entra token for it ({exc.message})")
    if isinstance(exc, PrometheusApiClientException):
        return MetricsUnavailable(f"Prometheus at {url} could not be queried: "
                                  f"{_prometheus_said(exc)}",
                                  getattr(exc, "retry_after_s", 0.0))
    response = exc.response
    if response is not None:
        return MetricsUnavailable(f"Prometheus at {url} could not be queried: HTTP "
                                  f"{response.status_code} {response.reason}",
                                  retry_after_s(response.headers))
    kind = "no answer" if isinstance(exc, requests.ConnectionError | requests.Timeout) \
        else type(exc).__name__
    return MetricsUnavailable(f"Prometheus at {url} could not be queried: {kind} ({exc})")
