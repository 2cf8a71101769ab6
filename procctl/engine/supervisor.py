"""The pool: a semaphore bounds what runs; dependencies, probes, restarts,
timeouts, fail_fast and the ordered shutdown are decided here.

Publishes events on the bus and returns a `RunResult`; never prints.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from procctl import events
from procctl.config.plan import Job, Plan
from procctl.engine import childenv, limits
from procctl.engine.enforcer import Enforcer, close_fds
from procctl.engine.guardian import TOKEN_VAR, Guardian, sweep
from procctl.engine.instance import Instance
from procctl.engine.metrics import Recorder
from procctl.engine.pool import Pool
from procctl.engine.predict import Prediction
from procctl.engine.probes import LogProbe, poll_probe
from procctl.engine.process import Child, ProcessTree
from procctl.engine.outcome import Cut, Ending, RunResult, judge
from procctl.engine.store import StateDir
from procctl.errors import ProcctlError, SpawnError
from procctl.states import State

MAX_BACKOFF_S = 30.0
STABLE_RUN_S = 10.0
"""A run that lasted this long resets the backoff delay to its first step."""
TIMEOUT_EXIT = 124


class Supervisor:
    def __init__(
        self,
        plan: Plan,
        bus: events.Bus,
        state_dir: StateDir,
        *,
        fail_fast: bool | None = None,
        run_timeout_s: float | None = None,
        predictions: Mapping[str, Prediction] | None = None,
        control_socket: Path | None = None,
    ) -> None:
        self.plan = plan
        self.bus = bus
        self.state_dir = state_dir
        self.fail_fast = plan.manifest.settings.fail_fast if fail_fast is None else fail_fast
        self.run_timeout_s = run_timeout_s
        self.predictions: Mapping[str, Prediction] = predictions or {}
        """Predicted duration and peak RSS per instance name, from history."""
        self.control_socket = control_socket
        """Where the control server listens, told to every child."""
        self.instances = [self._instance(job) for job in plan.jobs]
        self._by_process: dict[str, list[Instance]] = {}
        self._by_name: dict[str, Instance] = {}
        for inst in self.instances:
            self._by_process.setdefault(inst.job.process, []).append(inst)
            self._by_name[inst.name] = inst
        self._stopping = False
        self._exit_override: int | None = None
        self._interrupted = False
        self._stop_requested: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._pool: Pool | None = None
        self._guardian: Guardian | None = None
        self._base_env: dict[str, str] = {}
        self._run_env: dict[str, str] = {}
        """What every child is told of this supervisor (`childenv`)."""
        self._first_failure: Instance | None = None
        self._idle: asyncio.Event | None = None
        """Set when no instance task is left."""
        self._live_tasks = 0
        self.recorder = Recorder(plan, bus, state_dir, on_sample=self._on_sample)
        """Metrics of every run (Sample events, peaks) and the run history."""
        self.enforcer = Enforcer(plan.manifest.settings.metrics_interval_s, self._on_breach, self._on_limit_notice)
        """Holds each run to its `memory` and `cpu_percent` limits."""

    # ----------------------------------------------------------------- run

    async def run(self) -> RunResult:
        """Run the plan until nothing is left running or a stop completes."""
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        self._stop_requested = asyncio.Event()
        self._changed = asyncio.Event()
        self._pool = self._make_pool()
        self._publish_pool()
        self._idle = asyncio.Event()
        if not self.instances:
            self._idle.set()
        self.state_dir.prepare()
        self.state_dir.write_pid(os.getpid())
        self._raise_fd_limit()
        self.recorder.start()
        self._guardian = Guardian()
        self._base_env = {key: value for key, value in os.environ.items() if key not in childenv.stale()}
        self._base_env[TOKEN_VAR] = self._guardian.token
        self._run_env = childenv.supervisor_env(
            control_socket=self.control_socket, manifest=self.plan.manifest.path, run_id=self.recorder.run_id, notify_socket=None
        )
        self.enforcer.open((self._guardian.pid,))
        timer = loop.call_later(self.run_timeout_s, self._on_run_timeout) if self.run_timeout_s else None
        try:
            for inst in self.instances:
                self.launch(inst)
            await self._supervise()
        finally:
            if timer is not None:
                timer.cancel()
            running = [inst.child for inst in self.instances if inst.child is not None and inst.child.running]
            known = ProcessTree() if running else None
            for child in running:
                child.kill(known)
            if self._pool is not None:
                self._pool.close()
            sweep(self._guardian.token, exclude=self._guardian.pid)
            self._guardian.close()
            self.enforcer.close()
            self.recorder.close()
            self.state_dir.remove_pid()
        return self._result(time.monotonic() - began)

    def _instance(self, job: Job) -> Instance:
        return Instance(job, self.state_dir.log_path(job.log_name), self.bus.publish, self._notify)

    def add_instance(self, job: Job) -> Instance:
        """A new instance (scale up) joins the run."""
        inst = self._instance(job)
        self.instances.append(inst)
        self._by_process.setdefault(job.process, []).append(inst)
        self._by_name[inst.name] = inst
        return inst

    def launch(self, inst: Instance) -> None:
        """Start the lifecycle of an instance (at the start, or a later `start`)."""
        assert self._idle is not None
        inst.task = asyncio.get_running_loop().create_task(self._run_instance(inst))
        self._live_tasks += 1
        self._idle.clear()
        inst.task.add_done_callback(self._task_done)

    async def _supervise(self) -> None:
        """Wait until no instance has anything left to do; a stop request
        turns into the ordered shutdown. Instances may be added meanwhile
        (start, scale): `launch` counts them in."""
        assert self._stop_requested is not None and self._idle is not None
        loop = asyncio.get_running_loop()
        stop_waiter = loop.create_task(self._stop_requested.wait())
        idle_waiter = loop.create_task(self._idle.wait())
        try:
            await asyncio.wait({stop_waiter, idle_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if stop_waiter.done() and not idle_waiter.done():
                await self._shutdown()
                await idle_waiter
        finally:
            stop_waiter.cancel()
            idle_waiter.cancel()
        for inst in self.instances:
            if inst.task is not None and inst.task.done() and not inst.task.cancelled() and inst.task.exception() is not None:
                raise inst.task.exception()  # type: ignore[misc]

    def _task_done(self, task: asyncio.Task[None]) -> None:
        assert self._idle is not None
        self._live_tasks -= 1
        if self._live_tasks == 0:
            self._idle.set()

    def _raise_fd_limit(self) -> None:
        # Each running child costs about six descriptors here (three pipes,
        # a pidfd, its log file); the usual soft limit of 1024 is too few
        # for a large pool. Children inherit the raised soft limit.
        concurrent = min(len(self.instances), self.plan.max_parallel)
        needed = 64 + 8 * concurrent
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

    def _result(self, duration_s: float) -> RunResult:
        results = [inst.result() for inst in self.instances]
        if self._interrupted:
            code = 130
        elif self._exit_override is not None:
            code = self._exit_override
        elif any(r.state.failure for r in results):
            code = 1
        else:
            code = 0
        first = results[self.instances.index(self._first_failure)] if self._first_failure else None
        return RunResult(results, code, interrupted=self._interrupted, first_failure=first, duration_s=duration_s)

    # ------------------------------------------------------------ requests

    def request_stop(self, reason: str = "stop requested", *, interrupted: bool = False) -> None:
        """Graceful stop of everything, in reverse dependency order."""
        if interrupted:
            self._interrupted = True
        if self._stop_requested is not None and not self._stop_requested.is_set():
            self.bus.publish(events.Notice("procctl", "procctl", message=f"stopping: {reason}"))
            self._stop_requested.set()

    def force_stop(self) -> None:
        """SIGKILL every running tree now (a second Ctrl-C)."""
        self._stopping = True
        self.bus.publish(events.Notice("procctl", "procctl", message="forced stop: SIGKILL to everything", level="warning"))
        known = ProcessTree()
        for inst in self.instances:
            inst.stop_requested = True
            inst.stop_reason = inst.stop_reason or "stopped"
            if inst.child is not None and inst.child.running:
                self._cut(inst, Cut.REQUEST, inst.stop_reason, inst.stop_reason)
                inst.child.kill(known)
            elif inst.cancellable and inst.task is not None:
                inst.task.cancel()

    def _on_run_timeout(self) -> None:
        self._exit_override = TIMEOUT_EXIT
        self.request_stop(f"run timeout of {self.run_timeout_s:g}s reached")

    async def _shutdown(self) -> None:
        self._stopping = True
        self._notify()
        for inst in self.instances:
            if inst.cancellable and inst.task is not None:
                inst.task.cancel()
        by_level: dict[int, list[Instance]] = {}
        for inst in self.instances:
            by_level.setdefault(self.plan.levels.get(inst.job.process, 0), []).append(inst)
        for level in sorted(by_level, reverse=True):
            group = by_level[level]
            known = ProcessTree()  # per level: the ones before may have forked meanwhile
            for inst in group:
                self._stop_instance(inst, "stopped", known)
            await asyncio.gather(*(inst.task for inst in group if inst.task), return_exceptions=True)

    def _stop_instance(self, inst: Instance, reason: str, known: ProcessTree | None = None) -> None:
        inst.stop_requested = True
        inst.stop_reason = inst.stop_reason or reason
        child = inst.child
        if child is None or not child.running:
            if inst.cancellable and inst.task is not None:
                inst.task.cancel()
            return
        self._cut(inst, Cut.REQUEST, reason, inst.stop_reason, known)

    async def _stop_child(self, inst: Instance, child: Child, sig: int, timeout_s: float, known: ProcessTree | None = None) -> None:
        self.enforcer.stopping(inst)
        await child.stop(sig, timeout_s, known)
        if child.killed_hard:
            self.bus.publish(
                events.Notice(
                    inst.job.process,
                    inst.name,
                    message=f"did not stop within {timeout_s:g}s of {signal.Signals(sig).name}; sent SIGKILL",
                    level="warning",
                )
            )

    # ------------------------------------------------------------ instance

    def _notify(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run_instance(self, inst: Instance) -> None:
        try:
            await self._lifecycle(inst)
        except asyncio.CancelledError:
            if not inst.state.final:
                why = inst.stop_reason or "stopped before it started"
                inst.transition(State.SKIPPED if not inst.started_once else State.STOPPED, why)
                if not inst.started_once:
                    self.bus.publish(events.Skipped(inst.job.process, inst.name, why=why))
        finally:
            if inst.log_fd >= 0:
                os.close(inst.log_fd)
                inst.log_fd = -1

    async def _lifecycle(self, inst: Instance) -> None:
        assert self._pool is not None
        self.bus.publish(events.Queued(inst.job.process, inst.name))
        inst.cancellable = True
        blocked = await self._wait_for_dependencies(inst)
        inst.cancellable = False
        if blocked:
            inst.transition(State.SKIPPED, blocked)
            self.bus.publish(events.Skipped(inst.job.process, inst.name, why=blocked))
            return
        consecutive_failures = 0
        while True:
            if self._stopping or inst.stop_requested:
                raise asyncio.CancelledError
            inst.cancellable = True
            prediction = self.predictions.get(inst.name)
            ticket = await self._pool.acquire(
                priority=self._priority(inst),
                rss_bytes=prediction.rss_bytes if prediction else None,
                name=inst.name,
            )
            inst.cancellable = False
            inst.pool_ticket = ticket
            try:
                if self._stopping or inst.stop_requested:
                    raise asyncio.CancelledError
                ending, run_s = await self._run_once(inst)
            finally:
                inst.pool_ticket = None
                self._pool.release(ticket)
            if inst.restart_requested and not self._stopping:
                inst.restart_requested = False
                inst.stop_requested = False
                inst.stop_reason = ""
                inst.totals.restarts += 1
                self.bus.publish(events.Restarting(inst.job.process, inst.name, attempt=inst.totals.restarts, delay_s=0.0))
                continue
            if not self._should_restart(inst, ending.state):
                self._finish(inst, ending)
                return
            consecutive_failures = 0 if run_s >= STABLE_RUN_S else consecutive_failures + 1
            delay = min(inst.job.spec.backoff_s * 2 ** max(consecutive_failures - 1, 0), MAX_BACKOFF_S)
            inst.totals.restarts += 1
            inst.transition(State.BACKOFF, f"restart {inst.totals.restarts} in {delay:g}s")
            self.bus.publish(events.Restarting(inst.job.process, inst.name, attempt=inst.totals.restarts, delay_s=delay))
            inst.cancellable = True
            inst.wake.clear()
            try:
                await asyncio.wait_for(inst.wake.wait(), delay)
            except TimeoutError:
                pass
            inst.cancellable = False

    def _make_pool(self) -> Pool:
        plan = self.plan
        return Pool(
            plan.max_parallel,
            auto=plan.auto,
            cap=plan.parallel_cap if plan.auto else plan.max_parallel,
            min_free_bytes=plan.min_free_bytes,
            on_warning=lambda name, message: self.bus.publish(events.Notice(name, name, message=message, level="warning")),
            on_resize=self._publish_pool,
        )

    def _publish_pool(self) -> None:
        pool = self._pool
        if pool is not None:
            self.bus.publish(
                events.PoolSample("pool", "pool", pool_size=pool.limit, pool_cap=pool.cap, auto=pool.auto, running=pool.running, queued=pool.waiting)
            )

    def _priority(self, inst: Instance) -> float:
        """Lower leaves the queue first: plan order (FIFO), or the longest
        predicted duration first when the schedule says so."""
        if self.plan.schedule == "longest-first":
            prediction = self.predictions.get(inst.name)
            if prediction is not None and prediction.duration_s is not None:
                return -prediction.duration_s
        return 0.0

    def hold_queue(self, held: bool) -> None:
        """`pause --all` holds the queue: no new start until it is released."""
        assert self._pool is not None
        self._pool.hold(held)

    @property
    def queue_held(self) -> bool:
        return self._pool is not None and self._pool.held

    @property
    def pool(self) -> Pool | None:
        return self._pool

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _should_restart(self, inst: Instance, state: State) -> bool:
        if self._stopping or inst.stop_requested:
            return False
        spec = inst.job.spec
        if inst.totals.restarts >= spec.max_restarts:
            return False
        if state is State.LIMIT_EXCEEDED:
            return spec.on_limit == "restart"
        if spec.restart == "always":
            return True
        return spec.restart == "on-failure" and state.failure

    def _finish(self, inst: Instance, ending: Ending) -> None:
        state = ending.state
        inst.totals.reason = ending.reason
        inst.transition(state, ending.reason)
        if state.failure and self._first_failure is None:
            self._first_failure = inst
        if state.failure and self.fail_fast:
            self.request_stop(f"{inst.name} {inst.result().status_text} (fail_fast)")

    async def _wait_for_dependencies(self, inst: Instance) -> str:
        """Wait until every dependency holds. Returns '' or why it never will."""
        deps = inst.job.spec.depends_on
        while True:
            if self._stopping:
                raise asyncio.CancelledError
            pending = False
            for dep, condition in deps.items():
                verdict = self._dependency_verdict(dep, condition)
                if verdict is None:
                    pending = True
                elif verdict:
                    return verdict
            if not pending:
                return ""
            assert self._changed is not None
            await self._changed.wait()

    def _dependency_verdict(self, process: str, condition: str) -> str | None:
        """'' when it holds, None while undecided, else why it never will."""
        undecided = False
        for dep in self._by_process.get(process, []):
            if condition == "started":
                holds = dep.started_once
            elif condition == "ready":
                holds = dep.ready_once
            else:
                holds = dep.state is State.EXITED
            if holds:
                continue
            if dep.state.final:
                return f"dependency {dep.name} {dep.result().status_text}, not {condition}"
            undecided = True
        return None if undecided else ""

    # ------------------------------------------------------------- one run

    def _job_env(self, job: Job) -> dict[str, str]:
        env = dict(self._base_env)
        env.update(job.env)
        # The contract comes last: a manifest's [env] cannot misdirect it.
        env.update(self._run_env)
        env.update(childenv.instance_env(job.process, job.name, watchdog_s=None))
        return env

    def _open_log(self, inst: Instance) -> int:
        if inst.log_fd < 0:
            # Truncated at the first start of this run, appended across restarts.
            try:
                inst.log_fd = self.state_dir.open_log(inst.job.log_name, truncate=not inst.started_once)
            except (OSError, ProcctlError) as exc:
                raise SpawnError(f"cannot open its log: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") from None
        return inst.log_fd

    async def _run_once(self, inst: Instance) -> tuple[Ending, float]:
        """Spawn, probe and wait for one run. Returns how it ended and its length."""
        assert self._guardian is not None
        job = inst.job
        loop = asyncio.get_running_loop()
        inst.transition(State.STARTING)
        log_probe = LogProbe(job.spec.ready.target) if job.spec.ready and job.spec.ready.kind == "log" else None
        process_name, instance_name, publish = job.process, job.name, self.bus.publish

        def on_output(stream: str, data: bytes) -> None:
            publish(events.Output(process_name, instance_name, stream=stream, data=data))
            if log_probe is not None:
                log_probe.feed(data)

        env = self._job_env(job)
        join_fds = self.enforcer.join_fds(inst)
        try:
            child = Child(
                job.cmd,
                cwd=job.cwd,
                env=env,
                log_fd=self._open_log(inst),
                on_output=on_output,
                preexec_fn=limits.preexec(inst.limits, job.spec.nice, join_fds),
            )
            pid = await child.start()
        except SpawnError as exc:
            inst.totals.exit_code = 127
            self.bus.publish(events.Notice(job.process, inst.name, message=str(exc), level="error"))
            return Ending(State.FAILED, str(exc)), 0.0
        finally:
            close_fds(join_fds)
        self._guardian.watch(child.pgid)
        inst.child = child
        inst.cut, inst.cut_reason = None, ""
        self.recorder.started(inst, child)
        self.enforcer.apply(inst)
        inst.totals.pid = pid
        if inst.totals.started_at is None:
            inst.totals.started_at = child.started_at
        inst.started_once = True
        self.bus.publish(events.Started(job.process, inst.name, pid=pid, attempt=inst.totals.restarts + 1))
        inst.transition(State.RUNNING)
        if inst.stop_requested or self._stopping:
            # A stop came while the child was being spawned.
            self._stop_instance(inst, inst.stop_reason or "stopped")
        inst.timeout_left_s = None
        if job.spec.timeout_s:
            inst.timeout_handle = loop.call_later(job.spec.timeout_s, self._on_job_timeout, inst)
        inst.probe_env = env
        inst.log_probe = log_probe
        if job.spec.ready is None:
            inst.ready_once = True
        else:
            self.start_probe(inst)
        try:
            returncode = await child.wait()
        finally:
            if inst.timeout_handle is not None:
                inst.timeout_handle.cancel()
                inst.timeout_handle = None
            if inst.probe_task is not None:
                inst.probe_task.cancel()
                inst.probe_task = None
            inst.paused = False
            self._guardian.forget(child.pgid)
            self.enforcer.ended(inst)
        if inst.stop_task is not None:
            await inst.stop_task
            inst.stop_task = None
        run_s = (child.ended_at or time.time()) - child.started_at
        totals = inst.totals
        totals.ended_at = child.ended_at
        totals.duration_s = (totals.duration_s or 0.0) + run_s
        totals.exit_code = returncode if returncode >= 0 else None
        totals.signal = -returncode if returncode < 0 else None
        ending = judge(returncode, inst.cut, inst.cut_reason, cpu_time_limited=inst.limits.cpu_time is not None)
        if ending.kernel_limit:
            self.bus.publish(events.LimitExceeded(job.process, inst.name, limit=ending.kernel_limit, value=0, maximum=0, action=job.spec.on_limit))
        self.recorder.ended(inst, child, ending.state, run_s)
        self.bus.publish(events.Exited(job.process, inst.name, status=ending.state, code=totals.exit_code, signal=totals.signal, duration_s=run_s))
        return ending, run_s

    def _on_job_timeout(self, inst: Instance) -> None:
        self.bus.publish(events.Notice(inst.job.process, inst.name, message=f"timeout of {inst.job.spec.timeout_s:g}s reached", level="warning"))
        self._cut(inst, Cut.TIMEOUT, "timed out", f"ran longer than its timeout of {inst.job.spec.timeout_s:g}s")

    def _cut(self, inst: Instance, cut: Cut, label: str, reason: str, known: ProcessTree | None = None) -> None:
        """Stop the current run for `cut` (`label` goes with the stopping state,
        `reason` with the verdict). The first cut of a run decides its verdict;
        what follows then depends on the restart policy."""
        child = inst.child
        if child is None or inst.cut is not None:
            return
        if not child.running:
            # It ended already: only a limit the kernel enforced (an OOM kill
            # seen after the exit) can still say why.
            if cut is Cut.LIMIT:
                inst.cut, inst.cut_reason = cut, reason
            return
        inst.cut, inst.cut_reason = cut, reason
        inst.transition(State.STOPPING, label)
        spec = inst.job.spec
        timeout = spec.stop_timeout_s if spec.stop_timeout_s is not None else self.plan.manifest.settings.stop_timeout_s
        inst.stop_task = asyncio.get_running_loop().create_task(self._stop_child(inst, child, spec.stop_signal, timeout, known))

    # ------------------------------------------------------------- limits

    def _on_sample(self, inst: Instance, sample: events.Sample) -> None:
        """Each sample of a running tree (every `metrics_interval`): the pool
        learns how much of its predicted peak the job already holds, and the
        enforcer checks the `memory` limit in force now."""
        if self._pool is not None and inst.pool_ticket is not None and not sample.final:
            self._pool.grown(inst.pool_ticket, sample.rss_bytes)
        self.enforcer.sampled(inst, sample)

    def _on_breach(self, inst: Instance, limit: str, value: float, maximum: float, mechanism: str, reason: str) -> None:
        """A limit was exceeded: record it and stop the run; `on_limit` then
        decides between the end and a restart."""
        if inst.cut is not None:
            return  # Its run is being ended already; the first reason stands.
        action = inst.job.spec.on_limit
        self.bus.publish(
            events.LimitExceeded(inst.job.process, inst.name, limit=limit, value=value, maximum=maximum, action=action, mechanism=mechanism)
        )
        self._cut(inst, Cut.LIMIT, "limit exceeded", reason)

    def _on_limit_notice(self, inst: Instance, message: str) -> None:
        self.bus.publish(events.Notice(inst.job.process, inst.name, message=message, level="warning"))

    def start_probe(self, inst: Instance) -> None:
        """(Re)start the readiness probe of the current run, with a full timeout."""
        inst.probe_task = asyncio.get_running_loop().create_task(self._probe(inst))

    async def _probe(self, inst: Instance) -> None:
        spec = inst.job.spec.ready
        assert spec is not None
        passed = await poll_probe(spec, cwd=inst.job.cwd, env=inst.probe_env, log_probe=inst.log_probe)
        if inst.child is None or not inst.child.running:
            return
        if passed:
            if inst.may(State.READY):
                inst.ready_once = True
                inst.transition(State.READY)
                self.bus.publish(events.Ready(inst.job.process, inst.name, probe=spec.kind))
        else:
            why = f"not ready after {spec.timeout_s:g}s ({spec.kind} probe)"
            self.bus.publish(events.Notice(inst.job.process, inst.name, message=why, level="error"))
            self._cut(inst, Cut.PROBE, "not ready", why)

    # ------------------------------------------------------------ queries

    def find(self, names: Iterable[str]) -> list[Instance]:
        """Instances named by process (all of them) or instance name."""
        found: list[Instance] = []
        for name in names:
            if name in self._by_process:
                found.extend(self._by_process[name])
            elif name in self._by_name:
                found.append(self._by_name[name])
        return found
