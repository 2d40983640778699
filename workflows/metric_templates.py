"""The team's own gate metrics (:class:`workflows.model.MetricTemplate`). Pure.

Placeholders as Flagger's MetricTemplate fills them (``{{ namespace }}``,
``{{ interval }}``; spaces inside the braces optional); the value is judged against the
template's ``min`` and ``max``. A dry-run metric becomes a check marked ``dry run`` that
never changes the verdict.
"""

from __future__ import annotations

import re

from workflows.model import Check, MetricTemplate

PLACEHOLDER = re.compile(r"\{\{\s*(namespace|interval)\s*\}\}")


def render(template: MetricTemplate, namespace: str, interval_s: float) -> str:
    """The query for one namespace; the interval as a PromQL duration (``60s``)."""
    values = {"namespace": namespace, "interval": f"{max(1, round(interval_s))}s"}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template.query)


def check(template: MetricTemplate, namespace: str, value: float | None) -> Check:
    """The template's check of ``value`` against ``max`` (else ``min``; the side that
    fails when both are set); no value (the query found no data) fails, as Flagger fails
    a query that returns nothing."""
    metric = template.name + (" (dry run)" if template.dry_run else "")
    low_fails = (template.min is not None and value is not None and value < template.min)
    if template.max is not None and not low_fails:
        ok = value is not None and value <= template.max
        return Check(namespace=namespace, metric=metric, value=value, threshold=template.max,
                     op="<=", ok=ok)
    assert template.min is not None  # the fleet file requires min or max
    ok = value is not None and value >= template.min
    return Check(namespace=namespace, metric=metric, value=value, threshold=template.min,
                 op=">=", ok=ok)
