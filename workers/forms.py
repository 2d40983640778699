"""The modals ``/mesh upgrade`` and ``/mesh campaign`` open when typed without arguments.

Typing ``/mesh upgrade prod-weu asm-1-26 --bake=10m`` is error-prone: which clusters may I
touch, which revisions can each move to? The form offers only those: the clusters the
person may request changes of (the fleet file's policy) and, once one is chosen, the
revisions ARM's ``meshUpgradeProfiles`` offers it, with the wave and gate options.
Submitting it is typing the command: :func:`command_text` writes the command the form
stands for, and the bot runs it through the same parser, checks and start as the typed one;
what they refuse is shown on the modal's fields (``response_action: errors``).

Block Kit shapes follow Slack's reference (https://docs.slack.dev/reference/views/modal-views,
https://docs.slack.dev/reference/block-kit/blocks/input-block): a modal of ``input`` blocks
whose values come back in ``view.state.values[block_id][action_id]`` of the
``view_submission`` and ``block_actions`` payloads (``selected_option``, ``value``,
``selected_options``); the cluster menu ``dispatch_action`` so choosing one sends a
``block_actions`` at once and a worker can fill in its revisions (``views.update``). A
static menu holds at most 100 options (Slack's limit): a fleet larger than that lists the
first 100 and says to type the command for the others.

The form's origin (the channel the command was typed in and its ``response_url``, valid
30 minutes for 5 answers per Slack's slash-command reference) rides in the view's
``private_metadata``, so the submitted command answers where a typed one would.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from workflows.errors import TemporaryError
from workflows.model import UpgradeOptions
from workflows.syntax import duration_text

UPGRADE_FORM = "meshops_upgrade_form"  # the upgrade modal's callback_id
CAMPAIGN_FORM = "meshops_campaign_form"
FORMS = (UPGRADE_FORM, CAMPAIGN_FORM)
#: the cluster menu's action_id: choosing a cluster has a worker fill in its revisions
CLUSTER_ACTION = "meshops_form_cluster"
MAX_OPTIONS = 100  # a static_select's options (Slack's limit)

#: the upgrade form's option fields: block_id → the ``/mesh upgrade`` flag it stands for
UPGRADE_FLAG_BLOCKS = {"bake": "bake", "interval": "interval", "wave_size": "wave-size",
                       "pilot": "pilot"}


@dataclass(frozen=True)
class Origin:
    """Where the form was asked for: the command's channel and ``response_url``."""

    channel: str = ""
    response_url: str = ""

    def dump(self) -> str:
        return json.dumps({"channel": self.channel, "response_url": self.response_url})

    @classmethod
    def load(cls, private_metadata: str | None) -> Origin:
        """The origin a view carries; an empty one when the metadata is not ours."""
        try:
            data = json.loads(private_metadata or "{}")
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(str(data.get("channel", "")), str(data.get("response_url", "")))


class FormFills:
    """Which fill of an open form is the latest asked for, kept in Redis for an hour (a
    modal outlives no session that long): the person may pick a second cluster before the
    worker filling in the first one's revisions has answered, and the older fill must not
    overwrite the newer (``views.update`` without a ``hash``: choosing in a menu does not
    change the view's hash, so Slack cannot tell the two apart)."""

    TTL_S = 3600

    def __init__(self, r: Redis, prefix: str = "meshops") -> None:
        self.r, self.p = r, prefix

    def _key(self, view_id: str) -> str:
        return f"{self.p}:form:{view_id}"

    def ask(self, view_id: str) -> int:
        """Number a new fill of ``view_id`` (1, 2, …).

        Raises:
            TemporaryError: Redis did not answer.
        """
        try:
            pipe = self.r.pipeline()
            pipe.incr(self._key(view_id))
            pipe.expire(self._key(view_id), self.TTL_S)
            return int(pipe.execute()[0])
        except RedisError as exc:
            raise TemporaryError(f"Redis did not answer ({exc})") from exc

    def is_latest(self, view_id: str, fill: int) -> bool:
        """Whether no fill after ``fill`` was asked for (0: unnumbered, always latest)."""
        if fill <= 0:
            return True
        try:
            return int(self.r.get(self._key(view_id)) or 0) <= fill
        except RedisError:
            return True  # filling twice is harmless; not filling is not


def _text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": _text((label or value)[:75]), "value": value}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _modal(callback_id: str, title: str, submit: str, blocks: list[dict[str, Any]],
           origin: Origin) -> dict[str, Any]:
    return {"type": "modal", "callback_id": callback_id, "title": _text(title),
            "submit": _text(submit), "close": _text("Cancel"), "blocks": blocks,
            "private_metadata": origin.dump()}


def upgrade_view(clusters: Sequence[str], origin: Origin, cluster: str | None = None,
                 targets: Sequence[str] | None = None, note: str | None = None,
                 defaults: UpgradeOptions | None = None) -> dict[str, Any]:
    """The upgrade modal.

    Args:
        clusters: the clusters the person may request changes of, in the menu's order.
        cluster: the one chosen (the menu's ``initial_option``), or None.
        targets: the revisions ``cluster`` may move to (ARM's meshUpgradeProfiles), newest
            last; None while they are not read yet; empty when there is none now.
        note: one line about ``cluster`` (its revisions and Kubernetes version, or why it
            cannot move), shown under the menus.
        defaults: the cluster's upgrade options (the fleet file's), shown as placeholders of
            the option fields; the fleet defaults when None.
    Returns:
        A ``views.open``/``views.update`` view: type ``modal``, callback_id
        :data:`UPGRADE_FORM`, the origin in ``private_metadata``.
    """
    opts = defaults or UpgradeOptions()
    shown = list(clusters)[:MAX_OPTIONS]
    menu: dict[str, Any] = {"type": "static_select", "action_id": CLUSTER_ACTION,
                            "placeholder": _text("Choose a cluster"),
                            "options": [_option(c) for c in shown]}
    if cluster in shown:
        menu["initial_option"] = _option(cluster)
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "cluster", "dispatch_action": True,
         "label": _text("Cluster"), "element": menu}]
    if len(clusters) > MAX_OPTIONS:
        blocks.append(_context(f"{len(clusters) - MAX_OPTIONS} more clusters are not in the "
                               "menu (Slack shows 100): type `upgrade <cluster> <revision>` "
                               "for those."))
    if cluster is None:
        blocks.append(_context("Choose a cluster: the revisions it can move to come from "
                               "ARM (meshUpgradeProfiles)."))
    elif targets is None:
        blocks.append(_context(f"Reading the revisions `{cluster}` can move to from ARM …"))
    elif not targets:
        blocks.append(_context(f":no_entry: `{cluster}` cannot upgrade now."))
    else:
        newest = list(targets)[-MAX_OPTIONS:]
        blocks.append({"type": "input", "block_id": "revision", "label": _text("Revision"),
                       "element": {"type": "static_select", "action_id": "revision",
                                   "placeholder": _text("Choose a revision"),
                                   "options": [_option(t) for t in newest]}})
    if note:
        blocks.append(_context(note))
    blocks += [
        {"type": "input", "block_id": "bake", "optional": True,
         "label": _text("Bake each wave for"),
         "hint": _text("How long the gate watches a wave (at least 5s), e.g. 10m."),
         "element": {"type": "plain_text_input", "action_id": "bake",
                     "placeholder": _text(duration_text(opts.bake_s))}},
        {"type": "input", "block_id": "interval", "optional": True,
         "label": _text("Gate interval"),
         "hint": _text("How often the gate samples Prometheus, e.g. 1m."),
         "element": {"type": "plain_text_input", "action_id": "interval",
                     "placeholder": _text(duration_text(opts.interval_s))}},
        {"type": "input", "block_id": "wave_size", "optional": True,
         "label": _text("Namespaces per wave"),
         "element": {"type": "number_input", "action_id": "wave_size",
                     "is_decimal_allowed": False, "min_value": "1", "max_value": "1000",
                     "placeholder": _text(str(opts.wave_size))}},
        {"type": "input", "block_id": "pilot", "optional": True,
         "label": _text("Pilot namespaces"),
         "hint": _text("The first wave, comma-separated; by default the first namespace."),
         "element": {"type": "plain_text_input", "action_id": "pilot",
                     "placeholder": _text("ns1,ns2")}},
        {"type": "input", "block_id": "approve_waves", "optional": True,
         "label": _text("Approvals"),
         "element": {"type": "checkboxes", "action_id": "approve_waves",
                     "options": [_option("yes", "Ask for an approval between waves")],
                     **({"initial_options": [_option("yes", "Ask for an approval between "
                                                            "waves")]}
                        if opts.approve_waves else {})}},
    ]
    return _modal(UPGRADE_FORM, "Upgrade the mesh", "Plan upgrade", blocks, origin)


def campaign_view(origin: Origin, may_start: bool, revisions: Sequence[str] | None = None,
                  proposed: str | None = None, note: str | None = None) -> dict[str, Any]:
    """The campaign modal: plan (a dry run) or start a campaign to a revision.

    Args:
        may_start: whether the person may request campaigns (the fleet file's campaigns
            ``requesters``); without it the form only plans.
        revisions: the revisions the fleet's regions offer (ARM's meshRevisionProfiles),
            newest last; None while not read yet (submitting then lets meshops propose one).
        proposed: the revision meshops proposes (the menu's initial choice).
        note: why ``proposed`` (or why none could be read).
    """
    actions = [_option("plan", "Plan (dry run)")]
    if may_start:
        actions.append(_option("start", "Start (asks for approval)"))
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "action", "label": _text("What"),
         "element": {"type": "radio_buttons", "action_id": "action", "options": actions,
                     "initial_option": actions[0]}}]
    if revisions is None:
        blocks.append(_context("Reading the revisions the fleet's regions offer from ARM … "
                               "(submitting now lets meshops propose one)"))
    elif revisions:
        shown = list(revisions)[-MAX_OPTIONS:]
        menu: dict[str, Any] = {"type": "static_select", "action_id": "revision",
                                "placeholder": _text("Choose a revision"),
                                "options": [_option(r) for r in shown]}
        if proposed in shown:
            menu["initial_option"] = _option(proposed)
        blocks.append({"type": "input", "block_id": "revision", "optional": True,
                       "label": _text("Revision"), "element": menu,
                       "hint": _text("Empty: the revision meshops proposes.")})
    if note:
        blocks.append(_context(note))
    if not may_start:
        blocks.append(_context("Only the campaigns' requesters in the fleet file can start "
                               "one; you can plan."))
    return _modal(CAMPAIGN_FORM, "Fleet campaign", "Go", blocks, origin)


def _value(values: Mapping[str, Any], block: str) -> Any:
    """What the person entered in ``block`` (Slack's ``view.state.values``): a selected
    option's value, the text or number typed, the values of checked boxes; None if empty."""
    for entry in (values.get(block) or {}).values():
        if not isinstance(entry, dict):
            continue
        if entry.get("selected_option"):
            return entry["selected_option"].get("value")
        if "selected_options" in entry:
            return [o.get("value") for o in entry["selected_options"] or []] or None
        value = entry.get("value")
        return str(value).strip() if value not in (None, "") else None
    return None


def command_text(callback_id: str, state_values: Mapping[str, Any]
                 ) -> tuple[str, dict[str, str]]:
    """The ``/mesh`` command a submitted form stands for, and which of its words came from
    which block (``{"cluster": "cluster", "revision": "revision", "--bake": "bake", …}``)
    so a refusal can be shown on the field that caused it.

    Raises:
        KeyError: ``callback_id`` is not one of :data:`FORMS`.
    """
    if callback_id == UPGRADE_FORM:
        words = ["upgrade", str(_value(state_values, "cluster") or ""),
                 str(_value(state_values, "revision") or "")]
        for block, flag in UPGRADE_FLAG_BLOCKS.items():
            given = _value(state_values, block)
            if given is not None:
                if block == "pilot":  # "shop, cart" as people type lists
                    given = ",".join(p.strip() for p in str(given).split(","))
                words.append(f"--{flag}={shlex.quote(str(given))}")
        if _value(state_values, "approve_waves"):
            words.append("--approve-waves")
        return " ".join(w for w in words if w), {
            "cluster": "cluster", "revision": "revision",
            **{f"--{flag}": block for block, flag in UPGRADE_FLAG_BLOCKS.items()}}
    if callback_id == CAMPAIGN_FORM:
        action = str(_value(state_values, "action") or "plan")
        revision = _value(state_values, "revision")
        return f"campaign {action}{' ' + str(revision) if revision else ''}", {
            "revision": "revision" if "revision" in state_values else "action"}
    raise KeyError(callback_id)


def field_errors(callback_id: str, state_values: Mapping[str, Any]) -> dict[str, str]:
    """Each option field's own refusal (``{block_id: reason}``), as the parser gives it for
    that flag alone (:func:`workflows.syntax.upgrade_option`), so every bad field is shown
    at once on itself; empty when each field is fine alone (the command as a whole is
    checked after)."""
    from workflows.errors import InvalidCommand
    from workflows.syntax import upgrade_option

    if callback_id != UPGRADE_FORM:
        return {}
    errors = {}
    for block, flag in UPGRADE_FLAG_BLOCKS.items():
        given = _value(state_values, block)
        if given is None:
            continue
        try:
            upgrade_option(flag, str(given))
        except InvalidCommand as exc:
            errors[block] = str(exc)
    return errors


def field_of(message: str, fields: Mapping[str, str], fallback: str) -> str:
    """The block a refusal is about: the flag it names first (``--bake``), else the
    revision when it names one, else ``fallback``."""
    named = sorted((message.find(f"`{word}"), block) for word, block in fields.items()
                   if word.startswith("--") and f"`{word}" in message)
    if named:
        return named[0][1]
    lowered = message.lower()
    if "revision" in lowered and "revision" in fields:
        return fields["revision"]
    return fallback


# ------------------------------------------------------------------ filled by a worker


def may_request_of(engine: Any, user: str) -> list[str]:
    """The clusters of the fleet ``user`` may request changes of, by name; a cluster whose
    policy cannot be told now (Slack cannot say who is in one of its user groups) is left
    out, as the typed command would be refused."""
    from workflows.errors import MeshopsError

    out = []
    for cluster in sorted(engine.fleet.clusters):
        try:
            if engine.policy(cluster).may_request(user):
                out.append(cluster)
        except MeshopsError:
            continue
    return out


def upgrade_fill(engine: Any, user: str, cluster: str, origin: Origin) -> dict[str, Any]:
    """The upgrade form with ``cluster`` chosen and the revisions it may move to, read from
    ARM (``managedClusters`` and ``meshUpgradeProfiles``, as ``/mesh revisions`` reads
    them). ``engine`` is a :class:`workers.engine.Engine`. A cluster ARM does not answer for
    gets no revision menu and a note saying why (choosing it again reads ARM again)."""
    from workflows.errors import MeshopsError

    clusters = may_request_of(engine, user)
    defaults = engine.fleet.upgrade_options(cluster, {})
    try:
        mesh = engine.ports.mesh.get_mesh(cluster)
        if mesh.mode != "Istio" or not mesh.revisions:
            targets: list[str] = []
            note = (f":no_entry: `{cluster}` has no mesh: enable it first "
                    f"(`{engine.fleet.slack.command} enable {cluster}`).")
        elif len(mesh.revisions) > 1:
            targets = []
            note = (f":no_entry: `{cluster}` runs {' and '.join(mesh.revisions)}: an upgrade is "
                    "in progress; complete or roll back its run first.")
        else:
            targets = sorted(engine.ports.mesh.upgrade_targets(cluster),
                             key=_minor_key)
            note = (f"`{cluster}` runs {mesh.revisions[0]} on Kubernetes "
                    f"{mesh.kubernetes_version or '?'}"
                    + ("" if targets else "; ARM offers it no upgrade now") + ".")
    except MeshopsError as exc:
        targets, note = [], (f":warning: ARM did not answer for `{cluster}` ({exc}); choose it "
                             "again to retry.")
    return upgrade_view(clusters, origin, cluster=cluster, targets=targets, note=note,
                        defaults=defaults)


def _minor_key(revision: str) -> int:
    from workflows.model import revision_minor

    try:
        return revision_minor(revision)
    except ValueError:
        return -1


def campaign_fill(engine: Any, user: str, origin: Origin,
                  end_of_support: Mapping[str, Any], today: Any) -> dict[str, Any]:
    """The campaign form with the revisions the fleet's regions offer
    (``meshRevisionProfiles``, read once a region) and the one meshops proposes
    (:func:`workflows.campaign.propose_revision`: offered everywhere, AKS's n-1 default at
    most, not near its end of support), with why."""
    from workers.campaigns import cluster_facts
    from workflows.campaign import propose_revision
    from workflows.errors import MeshopsError
    from workflows.model import FLEET_SCOPE

    may_start = engine.policy(FLEET_SCOPE).may_request(user)
    facts = cluster_facts(engine.fleet, engine.ports)
    offered = sorted({p.revision for f in facts for p in f.profiles}, key=_minor_key)
    try:
        proposed, why = propose_revision(facts, end_of_support, today)
        note = f"Proposed: `{proposed}`. {why}"
    except MeshopsError as exc:
        proposed, note = None, f":warning: meshops proposes no revision: {exc}"
    return campaign_view(origin, may_start, offered, proposed, note)
