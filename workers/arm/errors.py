"""The one translation of azure-core's exceptions into meshops' (``workflows/errors.py``).

azure-core raises (``azure.core.exceptions``)::

    AzureError
    ├── ServiceRequestError          the request never reached ARM (DNS, refused, TLS)
    ├── ServiceResponseError         ARM did not answer in full (reset, timeout)
    ├── HttpResponseError            ARM answered a status outside the success ones
    │   ├── ClientAuthenticationError   401, or no credential could get a token
    │   ├── ResourceNotFoundError       404
    │   ├── ResourceExistsError         409 (mapped so by the management SDKs)
    │   ├── DecodeError                 an answer that cannot be read (any status)
    │   └── ...                         ResourceModifiedError (412), ...
    └── ...

Polling a long-running operation (``workers/arm/aks.py``, azure-core's ``LROBasePolling``)
raises its own ``BadStatus`` (a poll answered outside 2xx) and ``BadResponse`` (a status body
without a status); the adapter turns them into ``HttpResponseError`` / ``DecodeError`` as
``LROBasePolling.run`` does, so they are read here like any answer of ARM.

Temporary (:class:`TemporaryError`, ``delay_s`` = ARM's ``Retry-After``): no answer, 409
(another operation is running on the cluster), 429 (throttled), 5xx. Permanent
(:class:`ArmError` with ARM's error ``code``): every other 4xx, authentication, an unreadable
answer. azure-core's retry policy has already retried what it retries by the time these
reach us; nothing here retries again.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from workers.retry_after import retry_after_s
from workflows.errors import ArmBusy, ArmError, TemporaryError


def translate_azure_error(exc: AzureError, what: str) -> TemporaryError | ArmError:
    """An azure-core exception as a meshops error saying what failed and what to do.

    Args:
        exc: what azure-core or a management SDK raised.
        what: the operation, for people: ``"reading cluster aks-dev"``.

    Returns:
        :class:`TemporaryError` for no answer, 409, 429 and 5xx, its ``delay_s`` ARM's
        ``Retry-After`` (``retry-after-ms``, ``x-ms-retry-after-ms``) or 0; else
        :class:`ArmError` whose ``code`` is ARM's error code (``OperationNotAllowed``,
        ``ResourceNotFound``, ...) and whose message carries ARM's message.
    """
    if isinstance(exc, ClientAuthenticationError):
        return ArmError(f"{what}: could not authenticate to Azure ({exc.message}). Check the "
                        "managed identity or the AZURE_* environment of DefaultAzureCredential.",
                        exc.error.code if exc.error else None)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TemporaryError(f"{what}: ARM unreachable ({exc.message})")
    if isinstance(exc, DecodeError) or not isinstance(exc, HttpResponseError):
        return ArmError(f"{what}: ARM's answer could not be read ({exc.message})")
    status = exc.status_code or 0
    code = exc.error.code if exc.error else None
    message = exc.error.message if exc.error else (exc.reason or exc.message)
    delay = retry_after_s(getattr(exc.response, "headers", None))
    if status == 409:
        return ArmBusy(f"{what}: ARM answered 409 {code or 'Conflict'}: {message}", delay)
    if status == 429:
        return TemporaryError(f"{what}: ARM answered 429 (throttled): {message}", delay)
    if status >= 500:
        return TemporaryError(f"{what}: ARM answered {status} {code or exc.reason}: {message}",
                              delay)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return ArmError(f"{what}: not found in Azure ({message}). Check subscription, "
                        "resource_group and name in the fleet file.", code)
    return ArmError(f"{what}: ARM refused it: {status} {code or exc.reason}: {message}", code)
