"""What real clusters hold, in the core: OnDelete and partitioned StatefulSets, Jobs and
CronJobs, bare pods, workloads not injected, failures that were there before, rollouts past
their progress deadline. No I/O: the in-memory world of tests/core/fakes.py."""

from __future__ import annotations

from tests.core.fakes import FakeWorld
from tests.core.test_workflow import POLICY, drive, new_run
from workflows.lifecycle import decide, tick
from workflows.model import Phase, Run
from workflows.operations import BUSY_POLL_S
from workflows.ports import BatchWorkload, Pod, Workload
from workflows.rollout import assess


def approved(world: FakeWorld) -> tuple[Run, float]:
    run, now = drive(new_run(), world, 0)
    assert run.phase == Phase.AWAITING_APPROVAL, run.history[-1].text
    return decide(run, "approve", "UAPPROVER", POLICY, now), now


def plan_text(run: Run) -> str:
    return next(e.text for e in run.history if e.text.startswith("plan:"))


def test_the_plan_names_every_workload_handled_otherwise() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.add_statefulset("a", "db", strategy="OnDelete")
    world.add_statefulset("b", "kafka", partition=1)
    world.batch = [BatchWorkload("CronJob", "a", "nightly"), BatchWorkload("Job", "b", "seed"),
                   BatchWorkload("CronJob", "b", "cleanup", injection_disabled=True)]
    world.bare_pods[("a", "debug")] = "asm-1-25"
    world.no_inject.add(("b", "app1"))
    world.crashloop.add(("a", "app1"))
    world.namespaces["legacy"] = {"istio.io/rev": "asm-1-25", "istio-injection": "disabled"}
    run, _ = drive(new_run(), world, 0)
    text = plan_text(run)
    assert "OnDelete update strategy (meshops deletes their pods one at a time" in text
    assert "a/StatefulSet/db" in text
    assert "b/StatefulSet/kafka (ordinals < 1)" in text
    assert "Jobs and CronJobs (not restarted; their next pods get the new sidecar): " \
           "a/CronJob/nightly, b/Job/seed" in text
    assert "bare pods (no controller: restart them yourself): a/debug" in text
    assert 'not injected (sidecar.istio.io/inject: "false"; not waited for): ' \
           "b/Deployment/app1, b/CronJob/cleanup" in text
    assert "istio-injection=disabled wins over istio.io/rev; not moved): legacy" in text
    assert "already failing before the upgrade" in text and "a/Deployment/app1" in text
    assert "legacy" not in [ns for w in run.waves for ns in w.namespaces]


def test_ondelete_statefulset_pods_are_deleted_one_at_a_time() -> None:
    world = FakeWorld.seeded(["a"])
    world.add_statefulset("a", "db", replicas=3, strategy="OnDelete")
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert world.deleted == ["a/db-0", "a/db-1", "a/db-2"]  # one each, in ordinal order
    assert all(v == 1 for k, v in world.writes.items() if k.startswith("delete:"))
    assert not [k for k in world.writes if k.startswith("restart:a/db")]  # no template patch
    assert {rev for (_, n, _), rev in world.sts_pods.items()} == {"asm-1-26"}
    lines = [e.text for e in run.history if "deleted a/db-" in e.text]
    assert len(lines) == 3 and "one pod at a time" in lines[0]


def test_ondelete_waits_until_the_replacement_is_ready() -> None:
    db = Workload("StatefulSet", "a", "db", None, 1, 1, 2, 0, 1, ready=1, strategy="OnDelete")
    pods = [Pod("a", "db-0", "asm-1-26", "1.x", "Running", owner_kind="StatefulSet",
                owner="db", ordinal=0, ready=False),
            Pod("a", "db-1", "asm-1-25", "1.x", "Running", owner_kind="StatefulSet",
                owner="db", ordinal=1)]
    state = assess([db], pods, "asm-1-26", preexisting=[], started_at=0, deleted_at=5,
                   now=10, default_deadline_s=600)
    assert state.delete == [] and state.pending == [db] and not state.done
    ready = [pods[0].__class__(**{**pods[0].__dict__, "ready": True}), pods[1]]
    state = assess([db], ready, "asm-1-26", preexisting=[], started_at=0, deleted_at=5,
                   now=10, default_deadline_s=600)
    assert [p.name for p in state.delete] == ["db-1"]
    late = assess([db], pods, "asm-1-26", preexisting=[], started_at=0, deleted_at=5,
                  now=700, default_deadline_s=600)
    assert late.late == [db]


def test_partitioned_pods_stay_and_completion_waits_for_them() -> None:
    world = FakeWorld.seeded(["a"])
    world.add_statefulset("a", "kafka", replicas=3, partition=1)
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert "held on asm-1-25 by a StatefulSet partition: a/kafka-0" in " ".join(
        e.text for e in run.history)
    run = decide(run, "complete", "UAPPROVER", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.PAUSED and "a/kafka-0" in run.pause_reason
    assert "lower the partition" in run.pause_reason
    assert world.revisions == ["asm-1-25", "asm-1-26"]  # the stable control plane stays
    world.sts_pods[("a", "kafka", 0)] = "asm-1-26"  # the team lowered the partition
    run = decide(run, "resume", "UREQ", POLICY, now)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION
    run, now = drive(decide(run, "complete", "UAPPROVER", POLICY, now), world, now)
    assert run.phase == Phase.COMPLETED and world.revisions == ["asm-1-26"]


def test_jobs_finished_and_bare_pods_are_not_waited_for() -> None:
    world = FakeWorld.seeded(["a"])
    world.batch = [BatchWorkload("CronJob", "a", "nightly")]
    world.finished_job_pods[("a", "nightly-28911-x")] = "asm-1-25"  # done, on stable
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert not any("a/nightly" in k for k in world.writes)
    # a bare pod on the stable revision would lose its control plane: completion says so
    world.bare_pods[("a", "debug")] = "asm-1-25"
    run, now = drive(decide(run, "complete", "UAPPROVER", POLICY, now), world, now)
    assert run.phase == Phase.PAUSED and "a/debug" in run.pause_reason


def test_a_crash_loop_from_before_the_upgrade_does_not_roll_it_back() -> None:
    world = FakeWorld.seeded(["a", "b"])
    world.crashloop.add(("a", "app1"))
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    baseline = next(e.text for e in run.history if "baseline:" in e.text
                    and "wave 0" in e.text)
    assert "already failing before the move" in baseline and "a/Deployment/app1" in baseline
    assert run.waves[0].preexisting == ["a/Deployment/app1"]


def test_a_new_crash_loop_on_the_canary_rolls_back() -> None:
    world = FakeWorld.seeded(["a", "b"])
    run, now = approved(world)
    for _ in range(12):  # into wave 0, past its baseline
        r = tick(run, world, now)
        run, now = r.run, now + (r.recheck_after or 0)
        if run.waves[0].step.value == "verify":
            break
    world.canary_crash.add(("a", "app0"))
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK
    assert "pods crash-looping on asm-1-26: a/app0-x" in run.outcome


def test_a_rollout_past_its_progress_deadline_rolls_back_naming_it() -> None:
    world = FakeWorld.seeded(["a"])
    world.stuck.add(("a", "app1"))
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK
    assert "rollout not complete within its deadline: a/Deployment/app1" in run.outcome


def test_not_injected_workloads_are_not_restarted_nor_waited_for() -> None:
    world = FakeWorld.seeded(["a"])
    world.no_inject.add(("a", "app1"))
    world.stuck.add(("a", "app1"))  # it would never roll out, and must not matter
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert "restart:a/app1:asm-1-26" not in world.writes


def test_the_shared_mesh_config_is_copied_before_the_canary_starts() -> None:
    world = FakeWorld.seeded(["a"])
    mesh = {"mesh": "accessLogFile: /dev/stdout\n"}
    world.config_maps[("aks-istio-system", "istio-shared-configmap-asm-1-25")] = mesh
    run, now = drive(new_run(), world, 0)
    assert ("MeshConfig: istio-shared-configmap-asm-1-25 will be copied to "
            "istio-shared-configmap-asm-1-26 before the canary starts") in plan_text(run)
    assert not world.writes  # nothing before the approval
    run, now = drive(decide(run, "approve", "UAPPROVER", POLICY, now), world, now)
    assert world.config_maps[("aks-istio-system", "istio-shared-configmap-asm-1-26")] == mesh
    assert world.writes["configmap:aks-istio-system/istio-shared-configmap-asm-1-26"] == 1
    copied = [e for e in run.history if e.text.startswith("MeshConfig: copied")]
    put = [e for e in run.history if e.text.startswith("PUT serviceMeshProfile")]
    assert copied and put and copied[0].at <= put[0].at


def test_a_mesh_config_the_team_prepared_is_kept() -> None:
    world = FakeWorld.seeded(["a"])
    world.config_maps[("aks-istio-system", "istio-shared-configmap-asm-1-25")] = {"mesh": "a"}
    world.config_maps[("aks-istio-system", "istio-shared-configmap-asm-1-26")] = {"mesh": "b"}
    run, now = drive(new_run(), world, 0)
    assert "istio-shared-configmap-asm-1-26 exists already and is kept" in plan_text(run)
    drive(decide(run, "approve", "UAPPROVER", POLICY, now), world, now)
    assert world.config_maps[("aks-istio-system", "istio-shared-configmap-asm-1-26")] == {
        "mesh": "b"}
    assert not [k for k in world.writes if k.startswith("configmap:")]


def test_a_failed_canary_start_is_read_and_rolled_back() -> None:
    world = FakeWorld.seeded(["a"])
    world.revision_puts_fail = 1  # AKS leaves [stable, canary] with provisioningState Failed
    run, now = approved(world)
    run, now = drive(run, world, now)
    assert run.phase == Phase.ROLLED_BACK, run.history[-1].text
    assert "starting the canary failed" in run.outcome and "MeshInstallFailed" in run.outcome
    assert world.revisions == ["asm-1-25"] and not world.failed_state
    assert world.writes["put:asm-1-25"] == 1


def test_a_failed_completion_pauses_and_resume_tries_again() -> None:
    world = FakeWorld.seeded(["a"])
    run, now = approved(world)
    run, now = drive(run, world, now)
    world.revision_puts_fail = 1
    run, now = drive(decide(run, "complete", "UAPPROVER", POLICY, now), world, now)
    assert run.phase == Phase.PAUSED and run.paused_from == Phase.COMPLETING
    assert "completing failed" in run.pause_reason and "Resume tries again" in run.pause_reason
    assert world.failed_state
    run, now = drive(decide(run, "resume", "UREQ", POLICY, now), world, now)
    assert run.phase == Phase.COMPLETED and world.revisions == ["asm-1-26"]
    assert world.writes["put:asm-1-26"] == 2 and not world.failed_state


def test_another_operation_in_progress_is_waited_for_without_a_bound() -> None:
    world = FakeWorld.seeded(["a"])
    world.busy_puts = 40  # a node pool upgrade: 40 looks, 10 minutes
    run, now = approved(world)
    start = now
    run, now = drive(run, world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    assert now - start >= 40 * BUSY_POLL_S  # looked every 15 s, never gave up nor paused
    waits = [e for e in run.history if e.kind == "wait"]
    assert len(waits) == 1 and "in progress upgrade node pool operation" in waits[0].text
    assert world.writes["put:asm-1-25,asm-1-26"] == 1


def test_the_canarys_ingress_gateways_are_in_the_plan_and_waited_for() -> None:
    world = FakeWorld.seeded(["a"])
    world.ingress = {"External"}
    run, now = drive(new_run(), world, 0)
    assert ("ingress gateways (external): asm-1-26's run beside asm-1-25's from the canary's "
            "start") in plan_text(run)
    world.gateways_late.add("asm-1-26")  # the canary's gateway is not available at first
    run, now = drive(decide(run, "approve", "UAPPROVER", POLICY, now), world, now)
    assert run.phase == Phase.AWAITING_COMPLETION, run.history[-1].text
    started = next(e.text for e in run.history if "migrating wave 0" in e.text)
    assert started == ("istiod-asm-1-26 and its external ingress gateway available; "
                       "migrating wave 0")
    assert not world.gateways_late  # it was looked at again before wave 0
    run, now = drive(decide(run, "complete", "UAPPROVER", POLICY, now), world, now)
    assert run.phase == Phase.COMPLETED and world.revision_gateways() == {
        ("External", "asm-1-26"): True}


def test_a_rollout_is_looked_at_again_when_its_pace_says_it_will_be_done() -> None:
    from workflows.operations import POLL_S
    from workflows.rollout import Rollout
    from workflows.waves import ROLLOUT_LEAST_S, rollout_recheck_s

    def pod(name: str, revision: str) -> Pod:
        return Pod("shop", name, revision, None, "Running")

    # 4 pods moved in the 2 s since the restart, 2 left: about 1 s more
    half = Rollout(moved=[pod(f"n{i}", "asm-1-26") for i in range(4)],
                   stale=[pod(f"o{i}", "asm-1-25") for i in range(2)])
    assert rollout_recheck_s(half, 100.0, 102.0) == 1.0
    # nothing moved yet: as long again as it has run, never sooner than the least
    assert rollout_recheck_s(Rollout(stale=[pod("o", "asm-1-25")]), 100.0, 101.0) == 1.0
    assert rollout_recheck_s(Rollout(stale=[pod("o", "asm-1-25")]), 100.0, 100.1) \
        == ROLLOUT_LEAST_S
    # a slow rollout is never looked at less often than the fixed poll
    slow = Rollout(moved=[pod("n", "asm-1-26")], stale=[pod(f"o{i}", "asm-1-25")
                                                         for i in range(50)])
    assert rollout_recheck_s(slow, 100.0, 130.0) == POLL_S
    # every pod moved, the workloads' status not caught up yet: soon
    caught = Rollout(moved=[pod(f"n{i}", "asm-1-26") for i in range(10)])
    assert rollout_recheck_s(caught, 100.0, 105.0) == ROLLOUT_LEAST_S


def test_a_bake_look_lists_the_workloads_only_when_a_pod_crash_loops() -> None:
    """A look checks for crash loops: the wave's pods tell whether there is any, and only
    then are its Deployments, StatefulSets and DaemonSets listed (which pods count). That
    is a quarter of the look's Kubernetes calls, and the same verdicts."""
    world = FakeWorld.seeded(["a", "b"])
    listed = [0]
    real = world.list_workloads

    def counted(namespaces: list[str]) -> list[Workload]:
        listed[0] += 1
        return real(namespaces)

    world.list_workloads = counted  # type: ignore[method-assign]
    run, now = approved(world)
    looks, crashed_ns = 0, ""
    while not run.phase.terminal and run.phase != Phase.AWAITING_COMPLETION:
        wave = run.current_wave
        baking = (run.phase == Phase.MIGRATING and wave is not None
                  and wave.step.value == "bake")
        before = listed[0]
        r = tick(run, world, now)
        if baking:
            assert wave is not None
            looks += 1
            # listed only when one of the wave's pods crash-loops
            assert (listed[0] > before) == (crashed_ns in wave.namespaces), looks
            if not crashed_ns:  # from the next look on, a canary pod crash-loops
                crashed_ns = wave.namespaces[0]
                world.canary_crash.add((crashed_ns, "app0"))
        run, now = r.run, now + (r.recheck_after or 0)
    assert run.phase == Phase.ROLLED_BACK and looks >= 2
    assert f"crash-looping on asm-1-26 during the bake: {crashed_ns}/app0-x" in run.outcome
