"""The one exception tree of meshops.

Adapters translate every third-party exception (``HttpResponseError``, ``ApiException``,
``SlackApiError``, ``requests`` errors, Redis errors) into one of these with
``raise ... from exc``, so the core and the Slack front door deal with a single vocabulary,
in the manner of ``httpx._exceptions`` and kopf's temporary / permanent split::

    MeshopsError
    ├── TemporaryError(delay_s)        try again later: ARM 409 / 429, a 5xx, a timeout;
    │   │                              ``delay_s`` is the service's Retry-After (0: none)
    │   ├── ArmBusy                    ARM 409: another operation runs on the cluster
    │   └── MetricsUnavailable         Prometheus could not be queried (gate verdict ERROR)
    ├── PermanentError                 retrying will not help; a person must act
    │   ├── ArmError                   ARM refused the request (400, 404, a failed operation)
    │   └── ClusterApiError            the Kubernetes API refused the request
    ├── Refusal                        a person is told "no", with what would be right
    │   ├── InvalidCommand             a /mesh command that cannot be understood; has a usage
    │   ├── UnknownCluster             a cluster name not in the fleet file; lists the known
    │   ├── InvalidRevision            not ``asm-1-NN``, or not a valid target; lists valid
    │   ├── ClusterBusy                another run holds the cluster's lease; names it
    │   ├── RunNotFound                no run with that id
    │   └── DecisionRefused            a click or typed decision the run cannot take now,
    │                                  or that this person may not take; says what happened
    ├── StaleRun                       the run changed under us (compare-and-set lost)
    └── ConfigError                    the fleet file or the environment is invalid

A ``Refusal`` is answered to the person (ephemerally in Slack) and changes nothing; every
other error is meshops' or the world's problem and is handled where it happens.
"""

from __future__ import annotations


class MeshopsError(Exception):
    """Base of every error meshops raises on purpose. ``str(err)`` is a sentence for people."""


class TemporaryError(MeshopsError):
    """Try again later; nothing is wrong that time will not fix.

    ``delay_s`` is the least wait the service asked for (its ``Retry-After``, seconds), 0
    when it said nothing; the engine's retry policy waits at least that long.
    """

    def __init__(self, message: str, delay_s: float = 0.0) -> None:
        super().__init__(message)
        self.delay_s = max(0.0, float(delay_s))

    @property
    def retry_after(self) -> float:
        """The service's Retry-After in seconds (0: none given)."""
        return self.delay_s


class ArmBusy(TemporaryError):
    """ARM refused a write because another operation runs on the cluster (409: a node pool
    upgrade, say). Waiting for it is the answer, however long it takes."""


class RunBusy(TemporaryError):
    """Another worker holds the run's lock (a step is running); a decision waits its turn."""


class MetricsUnavailable(TemporaryError):
    """Prometheus did not answer or answered with an error; the gate verdict is ERROR."""


class MetricsBusy(MeshopsError):
    """A read ahead of need (``background``) was not made: as many as the deployment allows
    are under way. Nothing failed; the read is made when it is needed, or tried again."""


class PermanentError(MeshopsError):
    """Retrying will not help; the run stops and tells people why."""


class ArmError(PermanentError):
    """Azure Resource Manager refused a request or an operation failed. ``code`` is ARM's."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ClusterApiError(PermanentError):
    """The cluster's Kubernetes API refused a request (403, 404, 422)."""


class Refusal(MeshopsError):
    """Base of everything a person is told "no": the message says what would be right."""


class InvalidCommand(Refusal):
    """A command that cannot be understood; the message includes the usage that would work."""


class UnknownCluster(Refusal):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"Unknown cluster `{name}`. Known clusters: "
            + (", ".join(f"`{k}`" for k in known) or "none configured")
            + "."
        )
        self.name = name
        self.known = known


class InvalidRevision(Refusal):
    def __init__(self, message: str, valid: list[str] | None = None) -> None:
        super().__init__(message)
        self.valid = valid or []


class ClusterBusy(Refusal):
    def __init__(self, cluster: str, run_id: str) -> None:
        super().__init__(
            f"Run `{run_id}` is already acting on cluster `{cluster}`; one run per cluster at a "
            f"time. Follow it with `/mesh status {cluster}` or end it first."
        )
        self.cluster = cluster
        self.run_id = run_id


class RunNotFound(Refusal):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"No run `{run_id}`. `/mesh status` lists the active runs.")
        self.run_id = run_id


class DecisionRefused(Refusal):
    """A decision the run cannot take now, or that this person may not take."""


class StaleRun(MeshopsError):
    """The run was changed by someone else between read and write; read it again."""


class ConfigError(MeshopsError):
    """The fleet file or the environment is invalid; the message names the field's path."""
