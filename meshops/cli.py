"""The ``meshops`` command line (click): sandbox, bot, worker, beat, demo, config check."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshops.logs import configure_logging
from workers.heap import MAX_MEMORY_PER_CHILD_KIB

if TYPE_CHECKING:
    from sandbox.worldfile import GeneratedCampaign

DEFAULT_STATE = Path(".meshops/sandbox")


@click.group()
@click.version_option(package_name="meshops")
def main() -> None:
    """ChatOps for the Istio-based service mesh add-on of AKS."""
    configure_logging(os.environ.get("MESHOPS_LOG_LEVEL", "INFO"))


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE,
              show_default=True, help="Certificates, Prometheus data, fleet.yaml, sandbox.env.")
@click.option("--port-base", type=int, default=18400, show_default=True,
              help="ARM, control, Kubernetes, traffic, Slack, Prometheus on base+0..5.")
@click.option("--operation-s", type=float, default=2.0, show_default=True,
              help="How long an ARM operation takes.")
@click.option("--rollout-s", type=float, default=1.0, show_default=True,
              help="How long after a pod-template change the pods are replaced.")
@click.option("--extra-namespaces", type=int, default=0,
              help="Add this many namespaces of 5 Deployments to the dev cluster.")
@click.option("--prometheus-bin", default="prometheus", show_default=True)
@click.option("--changelog", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Serve this CHANGELOG.md as the GitHub releases feed.")
@click.option("--unreleased", multiple=True,
              help="Hold this revision back from ARM until released through the control API.")
@click.option("--world", "world_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Build the sandbox from this world file (clusters, "
              "namespaces, manifests, traffic, faults); default: the six-cluster fleet.")
@click.option("--namespaces", type=int, default=None,
              help="Generate a world instead: this many app namespaces per cluster (a "
              "Deployment of 2 pods behind a Service each, on the mesh).")
@click.option("--clusters", type=int, default=None,
              help="Generate a world instead: this many clusters (scale-01…; default 1).")
@click.option("--replicas", type=int, default=None,
              help="Pods of each generated namespace's Deployment (default 2).")
@click.option("--campaign", is_flag=True,
              help="Give the generated world a campaign: clusters labelled ring: dev (the "
              "first 10%), staging (the next 30%), prod (the rest), and campaigns: stages "
              "selecting them in that order.")
@click.option("--campaign-concurrency", default=None, metavar="DEV,STAGING,PROD",
              help="With --campaign: each stage's max_concurrency (default 5,10,15).")
@click.option("--campaign-max-failures", type=click.IntRange(0), default=None,
              help="With --campaign: each stage's failure budget (default 1).")
@click.option("--campaign-soak", default=None,
              help="With --campaign: each stage's soak, a duration (default 5s).")
def sandbox(state_dir: Path, port_base: int, operation_s: float, rollout_s: float,
            extra_namespaces: int, prometheus_bin: str, changelog: Path | None,
            unreleased: tuple[str, ...], world_file: Path | None, namespaces: int | None,
            clusters: int | None, replicas: int | None, campaign: bool,
            campaign_concurrency: str | None, campaign_max_failures: int | None,
            campaign_soak: str | None) -> None:
    """Run the embedded sandbox: ARM, Kubernetes, Istio traffic, Slack and Prometheus."""
    from sandbox.app import Sandbox
    from sandbox.worldfile import WorldError

    generated = generated_world(world_file, namespaces, clusters, extra_namespaces, replicas)
    rings = generated_campaign(generated, campaign, campaign_concurrency,
                               campaign_max_failures, campaign_soak)
    try:
        sb = Sandbox(state_dir, port_base, operation_s, rollout_s, prometheus_bin,
                     extra_namespaces, changelog=changelog, unreleased=list(unreleased),
                     world_file=world_file, generated=generated, campaign=rings)
    except WorldError as exc:
        click.echo(f"meshops sandbox: {exc}", err=True)
        sys.exit(2)
    sb.start()
    click.echo(f"sandbox ready ({sb.loaded.path}): fleet {state_dir / 'fleet.yaml'}, "
               f"env {state_dir / 'sandbox.env'}")
    for name, url in sb.url.items():
        click.echo(f"  {name:<10} {url}")
    contexts = ", ".join(c.key for c in sb.loaded.spec.clusters)
    click.echo(f"kubectl: export KUBECONFIG={sb.kubeconfig_path.resolve()}  "
               f"(contexts: {contexts}), e.g. kubectl --context "
               f"{sb.loaded.spec.clusters[0].key} get pods -A -w")
    stop = {"now": False}

    def handle(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    while not stop["now"]:
        time.sleep(0.2)
    sb.stop()


def generated_world(world_file: Path | None, namespaces: int | None, clusters: int | None,
                    extra_namespaces: int = 0, replicas: int | None = None
                    ) -> tuple[int, int, int] | None:
    """(namespaces, clusters, replicas) of a generated world, None without
    ``--namespaces``, ``--clusters`` and ``--replicas``; click.UsageError when they come
    with ``--world`` or ``--extra-namespaces``, or out of bounds
    (:func:`sandbox.worldfile.generate`)."""
    from sandbox.worldfile import (
        MAX_CLUSTERS,
        MAX_NAMESPACES,
        MAX_REPLICAS,
        MAX_TOTAL_NAMESPACES,
    )

    if namespaces is None and clusters is None and replicas is None:
        return None
    if world_file is not None:
        raise click.UsageError(
            "--world and --namespaces/--clusters both say what the world is: give a world "
            "file, or generate one with --namespaces N [--clusters K], not both.")
    if extra_namespaces:
        raise click.UsageError(
            "--extra-namespaces adds to the default fleet's dev cluster; a generated world "
            "has none: ask for more namespaces with --namespaces instead.")
    n, k = namespaces if namespaces is not None else 1, clusters if clusters is not None else 1
    if not 1 <= n <= MAX_NAMESPACES:
        raise click.BadParameter(f"{n}: a generated cluster has 1 to {MAX_NAMESPACES} app "
                                 "namespaces.", param_hint="--namespaces")
    if not 1 <= k <= MAX_CLUSTERS:
        raise click.BadParameter(f"{k}: a generated world has 1 to {MAX_CLUSTERS} clusters.",
                                 param_hint="--clusters")
    if n * k > MAX_TOTAL_NAMESPACES:
        raise click.UsageError(
            f"--namespaces {n} --clusters {k} make {n * k} namespaces; one sandbox carries at "
            f"most {MAX_TOTAL_NAMESPACES}: fewer namespaces or fewer clusters.")
    r = replicas if replicas is not None else 2
    if not 1 <= r <= MAX_REPLICAS:
        raise click.BadParameter(f"{r}: a generated app runs 1 to {MAX_REPLICAS} pods.",
                                 param_hint="--replicas")
    return n, k, r


def generated_campaign(generated: tuple[int, int, int] | None, campaign: bool,
                       concurrency: str | None, max_failures: int | None,
                       soak: str | None) -> GeneratedCampaign | None:
    """The campaign of a generated world (:class:`sandbox.worldfile.GeneratedCampaign`,
    defaults where an option is not given), None without ``--campaign``;
    click.UsageError when ``--campaign…`` options come without ``--campaign`` or
    ``--campaign`` without a generated world, click.BadParameter for a concurrency that is
    not three whole numbers from 1 to 50 or a soak that is not a duration."""
    from sandbox.worldfile import GeneratedCampaign
    from workflows.errors import InvalidCommand
    from workflows.syntax import parse_duration

    if not campaign:
        if concurrency is not None or max_failures is not None or soak is not None:
            raise click.UsageError("--campaign-concurrency, --campaign-max-failures and "
                                   "--campaign-soak shape the generated campaign: add "
                                   "--campaign.")
        return None
    if generated is None:
        raise click.UsageError("--campaign gives a generated world its campaign: generate "
                               "one with --namespaces N [--clusters K] (a world file says "
                               "its own campaigns:).")
    rings = GeneratedCampaign()
    if concurrency is not None:
        parts = concurrency.split(",")
        if len(parts) != 3 or not all(p.strip().isdigit() and 1 <= int(p) <= 50
                                      for p in parts):
            raise click.BadParameter(f"{concurrency}: three whole numbers from 1 to 50, the "
                                     "dev, staging and prod stages' max_concurrency "
                                     "(e.g. 5,10,15).", param_hint="--campaign-concurrency")
        a, b, c = (int(p) for p in parts)
        rings = replace(rings, max_concurrency=(a, b, c))
    if max_failures is not None:
        rings = replace(rings, max_failures=max_failures)
    if soak is not None:
        try:
            parse_duration(soak)
        except InvalidCommand as exc:
            raise click.BadParameter(str(exc), param_hint="--campaign-soak") from None
        rings = replace(rings, soak=soak)
    return rings


@main.command()
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Pool processes. A step mostly waits on ARM, Kubernetes, Prometheus and "
                   "Slack, so twice the 2 CPUs of the deployed worker (deploy/): Celery's "
                   "guide finds more than twice the CPUs rarely helps.")
@click.option("--max-memory-per-child", type=click.IntRange(min=0),
              default=MAX_MEMORY_PER_CHILD_KIB, show_default=True, metavar="KIB",
              help="Replace a pool process once its task is done if its peak resident memory "
                   "passed this many KiB (Celery's worker_max_memory_per_child; 0: never): "
                   "what a process frees its allocator keeps (workers/heap.py).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, max_memory_per_child: int, loglevel: str) -> None:
    """Run a Celery worker that advances runs and posts to Slack."""
    from meshops.wiring import check_config
    from workers.tasks.app import app

    check_config()
    app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}",
                     "--without-gossip", "--without-mingle",
                     *([f"--max-memory-per-child={max_memory_per_child}"]
                       if max_memory_per_child else [])])


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--schedule", type=click.Path(path_type=Path),
              default=Path(".meshops/celerybeat-schedule"), show_default=True)
def beat(loglevel: str, schedule: Path) -> None:
    """Run Celery beat: the sweep that re-enqueues overdue runs."""
    from meshops.wiring import check_config
    from workers.tasks.app import app

    check_config()
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"])


@main.group()
def probe() -> None:
    """Health checks for orchestrators (exit 0: healthy, 1: not, with the reason)."""


@probe.command("beat")
@click.option("--schedule", type=click.Path(path_type=Path),
              default=Path(".meshops/celerybeat-schedule"), show_default=True,
              help="The schedule file `meshops beat` was started with.")
@click.option("--max-age", type=float, default=60.0, show_default=True,
              help="Seconds since beat's last tick after which it is taken to be dead.")
def probe_beat(schedule: Path, max_age: float) -> None:
    """Beat is alive: its loop ticked within --max-age seconds (the file
    <schedule>.alive it touches after every tick; workers/tasks/beat.py)."""
    from workers.tasks.beat import check_beat

    ok, why = check_beat(schedule, max_age)
    click.echo(why, err=not ok)
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True,
              help="HTTP mode: where Slack sends /slack/events, and /livez and /readyz. "
                   "Socket Mode: /livez and /readyz alone.")
@click.option("--host", default="0.0.0.0", show_default=True)
def bot(port: int, host: str) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode. Either
    way it serves GET /livez and /readyz on --port (ready: Redis answers and, in Socket
    Mode, the WebSocket to Slack is open)."""
    from meshops.wiring import run_bot

    run_bot(host, port)


@main.group()
def config() -> None:
    """Check configuration."""


@config.command("check")
@click.argument("fleet", type=click.Path(path_type=Path), required=False)
def config_check(fleet: Path | None) -> None:
    """Validate a fleet file (default: $MESHOPS_FLEET) and print what it configures."""
    from workers.config import load_fleet, settings
    from workflows.errors import ConfigError

    path = fleet or settings().meshops_fleet
    try:
        f = load_fleet(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(f"{path}: ok, {len(f.clusters)} clusters: {', '.join(sorted(f.clusters))}")


@main.group()
def releases() -> None:
    """AKS release notes: parse them into mesh revision events."""


@releases.command("parse")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mentions", is_flag=True,
              help="Also print `mentioned` events: lines naming a revision that yield no "
                   "event (the watcher's quiet notices).")
def releases_parse(file: Path, mentions: bool) -> None:
    """Print the events of FILE (CHANGELOG.md markdown, or GitHub releases JSON) as JSON
    lines: {"release", "kind", "revision", "version", …}; kinds available, deprecated,
    patched, announced (and mentioned with --mentions)."""
    import json

    from workflows.releases import KINDS, parse, parse_releases_json

    text = file.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            events = parse_releases_json(json.loads(text))
        except ValueError as exc:
            click.echo(f"{file}: not a GitHub releases document: {exc}", err=True)
            sys.exit(2)
    else:
        events = parse(text)
    for event in events:
        if mentions or event.kind in KINDS:
            click.echo(event.to_json())


@main.command()
@click.option("--run", "run_id", default=None, help="Only this run.")
@click.option("--cluster", default=None, help="Only this cluster.")
@click.option("--since", default=None,
              help="A duration ago (30m, 2h) or an ISO 8601 time (2026-11-22T10:00:00Z).")
def audit(run_id: str | None, cluster: str | None, since: str | None) -> None:
    """Print the audit stream as JSON lines: commands, clicks, decisions and steps."""
    import json
    from datetime import datetime

    from workers.config import settings
    from workers.store.audit import AuditLog
    from workers.store.connect import redis_client
    from workflows.commands import parse_duration
    from workflows.errors import InvalidCommand

    start = None
    if since:
        try:
            start = time.time() - parse_duration(since)
        except InvalidCommand:
            try:
                start = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise click.BadParameter("a duration (30m, 2h) or an ISO 8601 time",
                                         param_hint="--since") from None
    env = settings()
    log = AuditLog(redis_client(env.redis_url),
                   env.meshops_redis_prefix)
    for entry in log.read(run=run_id, cluster=cluster, since=start):
        click.echo(json.dumps(entry, ensure_ascii=False))


@main.command()
@click.option("--scenario", type=click.Choice(["upgrade", "rollback", "incident", "release",
                                                 "enable", "fleet", "fleet-halt"]),
              default="upgrade",
              show_default=True)
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path(".meshops/demo"),
              show_default=True)
@click.option("--port-base", type=int, default=18400, show_default=True)
@click.option("--bot-port", type=int, default=18480, show_default=True)
@click.option("--bake", default="10s", show_default=True, help="Bake time of each wave.")
@click.option("--interval", default="5s", show_default=True, help="Gate sampling interval.")
@click.option("--cluster", default=None, help="Sandbox cluster (default: dev for upgrade, "
              "staging for rollback, edge for enable).")
@click.option("--timeout", type=float, default=600, show_default=True)
@click.option("--socket-mode", is_flag=True,
              help="Run the bot in Socket Mode instead of HTTP mode.")
@click.option("--world", "world_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Build the sandbox from this world file; --cluster then "
              "defaults to its first cluster with the mesh on.")
@click.option("--to", "to_revision", default=None,
              help="Upgrade to this revision (default: the cluster's newest valid upgrade in "
              "meshUpgradeProfiles; asm-1-26 on the default fleet).")
@click.option("--namespaces", type=int, default=None,
              help="Start the sandbox on a generated world of this many app namespaces per "
              "cluster; --cluster then defaults to scale-01.")
@click.option("--clusters", type=int, default=None,
              help="Start the sandbox on a generated world of this many clusters.")
def demo(scenario: str, state_dir: Path, port_base: int, bot_port: int, bake: str,
         interval: str, cluster: str | None, timeout: float, socket_mode: bool,
         world_file: Path | None, to_revision: str | None, namespaces: int | None,
         clusters: int | None) -> None:
    """Play a canary upgrade from the Slack side on the sandbox, end to end."""
    from meshops.demo import run_demo
    from sandbox.worldfile import WorldError
    from sandbox.worldfile import load as load_world

    generated = generated_world(world_file, namespaces, clusters)
    if world_file is not None:
        try:
            load_world(world_file)  # a wrong world fails here, before anything starts
        except WorldError as exc:
            click.echo(f"meshops demo: {exc}", err=True)
            sys.exit(2)
    sys.exit(run_demo(scenario, state_dir, port_base, bot_port, bake, interval, cluster,
                      timeout, socket_mode, world_file=world_file, to_revision=to_revision,
                      generated=generated))


@main.command()
@click.option("--rounds", type=int, default=6, show_default=True,
              help="Scenarios to play (upgrade and rollback in turn, over dev, staging, prod).")
@click.option("--seed", type=int, default=None, help="Seed of the chaos monkey's choices.")
@click.option("--every", type=(float, float), default=(3.0, 7.0), show_default=True,
              help="Seconds between two kills or faults (uniform between the two).")
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path(".meshops/chaos"),
              show_default=True)
@click.option("--port-base", type=int, default=18600, show_default=True)
@click.option("--parallel", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Scenarios played at once, on different clusters.")
@click.option("--redis-every", type=float, default=None,
              help="Instead: run `meshops demo --scenario upgrade` while its Redis (append-only "
              "file on) is killed and started again every this many seconds.")
def chaos(rounds: int, seed: int | None, every: tuple[float, float], state_dir: Path,
          port_base: int, parallel: int, redis_every: float | None) -> None:
    """Play upgrades and rollbacks while processes die and ARM, Kubernetes and Slack fail;
    print the figures. Exits 1 if anything was lost or done twice."""
    from meshops.chaos import demo_under_redis_restarts, run_chaos

    if redis_every is not None:
        sys.exit(demo_under_redis_restarts(state_dir.resolve(), port_base, redis_every))

    if rounds < 1 or every[0] <= 0 or every[1] < every[0]:
        raise click.BadParameter("--rounds ≥ 1 and --every LOW HIGH with 0 < LOW ≤ HIGH")
    figures = run_chaos(state_dir.resolve(), port_base, rounds=rounds, seed=seed, every=every,
                        parallel=parallel)
    sys.exit(1 if figures.losses else 0)


@main.group()
def gate() -> None:
    """The canary gate (workflows/canary.py) outside a run."""


@gate.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--canary", "canary_revision", default=None,
              help="The canary revision (asm-1-NN); default: the newest in the file.")
@click.option("--bake", default="10m", show_default=True, help="Bake time of each wave.")
@click.option("--interval", default=None,
              help="Time between looks; default: the windows' usual length.")
@click.option("--verbose", "-v", is_flag=True, help="Every signal's check at every look.")
def gate_replay(file: Path, canary_revision: str | None, bake: str, interval: str | None,
                verbose: bool) -> None:
    """Score FILE, JSON lines of traffic windows (one TrafficWindow per line, as
    `benchmarks/gate.py --write` writes them): for each wave (the namespaces that moved to
    the canary revision in the same interval, the subjects that stayed as the control)
    print the gate's verdict at every interval, until it decides. Exits 1 if a wave
    FAILs, 2 if FILE cannot be read."""
    from datetime import UTC, datetime

    from workflows.canary import interval_of, load_jsonl, newest_revision, replay
    from workflows.errors import InvalidCommand
    from workflows.syntax import parse_duration

    try:
        bake_s = parse_duration(bake)
        interval_s = parse_duration(interval) if interval else None
    except InvalidCommand as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        windows = load_jsonl(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        click.echo(f"{file}: {exc}", err=True)
        sys.exit(2)
    canary = canary_revision or newest_revision(windows)
    step = interval_s or interval_of(windows)
    subjects = {w.subject for w in windows}
    click.echo(f"{file}: {len(windows)} windows of {len(subjects)} subjects; canary "
               f"{canary or '—'}, looks every {step:g} s, bake {bake_s:g} s")
    waves = replay(windows, canary, bake_s, step)
    if not waves:
        click.echo("no wave: no subject moved to the canary revision in this file")
        return
    failed = False
    for no, wr in enumerate(waves, 1):
        w = wr.wave
        moved = datetime.fromtimestamp(w.bake_started_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"wave {no}: {', '.join(w.canary)} moved at {moved}; control: "
                   f"{len(w.control)} subjects; gateways: {', '.join(w.gateways) or 'none'}")
        for look in wr.looks:
            state = look.verdict.value if look.verdict else f"({look.sample.verdict.value})"
            line = f"  interval {look.look:>2}  {state:<15}"
            if look.verdict is None and not verbose:
                line += " " + look.reason[:150] + ("…" if len(look.reason) > 150 else "")
            click.echo(line)
            if look.verdict is not None and look.verdict.value != "FAIL" and not verbose:
                click.echo(f"      {look.reason.split(': ', 1)[0]}")
            for c in look.checks:
                deciding = look.verdict is not None and (
                    c.status == "regressed"
                    or (look.verdict.value != "FAIL" and c.blocking and c.status != "ok"))
                if verbose or deciding:
                    click.echo(f"      [{c.status}] {c.text}")
        last = wr.looks[-1] if wr.looks else None
        if last is None or last.verdict is None:
            click.echo("  verdict: none yet (the file ends before the gate decides)")
        else:
            click.echo(f"  verdict: {last.verdict.value} after {last.look} intervals")
            failed = failed or last.verdict.value == "FAIL"
    sys.exit(1 if failed else 0)
