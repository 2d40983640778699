"""Planning an upgrade: which namespaces move, in which waves (DESIGN.md §5.1 step 1). Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from workflows.errors import InvalidRevision, PermanentError
from workflows.model import UpgradeOptions, Wave, system_namespace
from workflows.ports import INJECTION_LABEL, MeshState, Namespace, Workload


@dataclass(frozen=True)
class UpgradePlan:
    stable_revision: str
    canary_revision: str
    waves: list[Wave]
    skipped: list[str]  # namespaces with istio-injection=enabled, which the add-on ignores


def check_upgrade(mesh: MeshState, canary: str, targets: list[str]) -> str:
    """Decide whether ``canary`` may be started on a cluster whose mesh is ``mesh``.

    Returns:
        The stable revision.
    Raises:
        PermanentError: the mesh is off, an upgrade is already in progress (two revisions),
            or the cluster is still being provisioned.
        InvalidRevision: ``canary`` is not in ``meshUpgradeProfiles`` (lists the valid ones).
    """
    if mesh.mode != "Istio" or not mesh.revisions:
        raise PermanentError(
            "The Istio add-on is not enabled on this cluster; enable the mesh first "
            "(`/mesh enable <cluster>`)."
        )
    if len(mesh.revisions) > 1:
        raise PermanentError(
            "An upgrade is already in progress on this cluster: revisions "
            f"{', '.join(mesh.revisions)} are both installed. Complete or roll it back first."
        )
    stable = mesh.revisions[0]
    if canary == stable:
        raise InvalidRevision(f"The cluster already runs `{stable}`.", targets)
    if canary not in targets:
        valid = ", ".join(f"`{t}`" for t in targets) or "none (no upgrade available)"
        raise InvalidRevision(
            f"`{canary}` is not a valid upgrade from `{stable}` on this cluster. "
            f"Valid targets: {valid}.",
            targets,
        )
    return stable


def plan_waves(
    namespaces: list[Namespace],
    workloads: list[Workload],
    stable: str,
    canary: str,
    options: UpgradeOptions,
) -> UpgradePlan:
    """Group the namespaces on ``stable`` into waves; wave 0 is the pilot.

    Explicit ``options.waves`` are taken as given (names not on ``stable`` are refused);
    otherwise the pilot is ``options.pilot`` (default: the first namespace by name) and the
    rest follow in waves of ``options.wave_size`` in name order.

    Raises:
        PermanentError: no namespace is on the stable revision, or a named namespace is not.
    """
    on_stable = sorted(
        ns.name for ns in namespaces if ns.revision == stable and not system_namespace(ns.name)
        and (not options.only or ns.name in options.only)
        # istio-injection=disabled wins over istio.io/rev (Istio docs, "Sidecar injection"):
        # its pods have no sidecar, nothing to move
        and ns.labels.get(INJECTION_LABEL) != "disabled"
    )
    skipped = sorted(
        ns.name
        for ns in namespaces
        if ns.labels.get(INJECTION_LABEL) == "enabled" and ns.revision is None
    )
    if not on_stable:
        raise PermanentError(
            f"No namespace is labelled `istio.io/rev={stable}`; nothing to migrate."
        )
    per_ns = Counter(w.namespace for w in workloads)
    if options.waves:
        groups = [list(g) for g in options.waves if g]
        named = [ns for g in groups for ns in g]
        unknown = [ns for ns in named if ns not in on_stable]
        if unknown:
            raise PermanentError(
                f"Namespaces not on `{stable}`: {', '.join(unknown)}. "
                f"On `{stable}`: {', '.join(on_stable)}."
            )
        rest = [ns for ns in on_stable if ns not in named]
        if rest:
            groups.append(rest)
    else:
        pilot = list(options.pilot) or on_stable[:1]
        unknown = [ns for ns in pilot if ns not in on_stable]
        if unknown:
            raise PermanentError(
                f"Pilot namespaces not on `{stable}`: {', '.join(unknown)}. "
                f"On `{stable}`: {', '.join(on_stable)}."
            )
        rest = [ns for ns in on_stable if ns not in pilot]
        size = max(1, options.wave_size)
        groups = [pilot] + [rest[i : i + size] for i in range(0, len(rest), size)]
    waves = [
        Wave(index=i, namespaces=g, workloads=sum(per_ns[ns] for ns in g))
        for i, g in enumerate(groups)
    ]
    return UpgradePlan(stable, canary, waves, skipped)
