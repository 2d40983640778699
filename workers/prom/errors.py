"""The one translation of prometheus-api-client's exceptions into meshops'.

``PrometheusConnect.custom_query`` raises ``PrometheusApiClientException`` for an answer other
than 200 (its message: ``HTTP Status Code 503 (b'...')``, the body being Prometheus' error
object ``{"status": "error", "errorType": "...", "error": "..."}``) and lets ``requests``'
exceptions through (no answer, retries exhausted, a body that is not JSON). Every one of them
means the gate could not measure: :class:`MetricsUnavailable`, whose verdict is ERROR (retried,
then the run pauses), with Prometheus' own status, error type and message. So is an Entra
token that azure-identity could not get for Azure Monitor managed Prometheus (``AzureError``).
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
        exc: what a query raised (``PrometheusApiClientException`` in ``custom_query``'s
            words, as :class:`~workers.prom.metrics.PrometheusMetricsApi` raises it too, or
            requests' own), or the credential asked for a token.
        url: the Prometheus queried (no credentials in it).

    Returns:
        ``MetricsUnavailable("Prometheus at <url> could not be queried: <what it said>")``,
        its ``delay_s`` the ``Retry-After`` of an HTTP error response, else 0.
    """
    if isinstance(exc, AzureError):
        return MetricsUnavailable(f"Prometheus at {url}: no Entra token for it ({exc.message})")
    if isinstance(exc, PrometheusApiClientException):
        return MetricsUnavailable(f"Prometheus at {url} could not be queried: "
                                  f"{_prometheus_said(exc)}")
    response = exc.response
    if response is not None:
        return MetricsUnavailable(f"Prometheus at {url} could not be queried: HTTP "
                                  f"{response.status_code} {response.reason}",
                                  retry_after_s(response.headers))
    kind = "no answer" if isinstance(exc, requests.ConnectionError | requests.Timeout) \
        else type(exc).__name__
    return MetricsUnavailable(f"Prometheus at {url} could not be queried: {kind} ({exc})")
