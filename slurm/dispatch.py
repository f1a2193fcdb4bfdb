"""Send validated experiment cells to an executor, all through submitit.

Executors:
- `local` (default): one run after another, each in a subprocess (submitit's LocalExecutor),
  with as many local tasks as the run asks GPUs (`train.gpus`: torchrun-style data
  parallelism) and those GPUs made visible when the machine has them; waits for each.
- `inline`: one run after another in this process (no interpreter start per run).
- `--jobs N` (local, inline): N runs at once, each in its own interpreter (inline: N spawned
  workers that train one run after another) with its share of the CPUs ($S2H_THREADS); a run
  starts once the runs it reads have finished. On a CPU the mini profile's small networks are
  bound by per-operation overhead, not arithmetic: two single-threaded runs on 2 cores finish
  in 37 s what one two-threaded run does in 35 s (ResNet-50, one S2HPruner epoch).
- `debug`: in this process (submitit's DebugExecutor), for development and debuggers.
- `slurm`: submitit's AutoExecutor, one job array per wave and resource shape, capped by
  `parallelism`; returns as soon as everything is queued. A cell that reads another run
  (Table 7's fine-tuning, Table 8's scratch runs) goes in a later wave that starts after its
  sources (`--dependency=afterok`).

Each submission writes `job.json` into the run folder (executor, job id, log paths;
`core.runstate.write_job`); `core.runstate.run_state` reads it, so `status` knows a run is
queued or running and a second submission knows not to queue it again. submitit's own files
(pickles, stdout/stderr) live under `<output_root>/submitit/<experiment>/`.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import submitit

from core.config import to_dict
from core.errors import ConfigError
from core.env import THREADS_VARIABLE, cpus_available, size_threads
from core.runstate import hostname, read_job, write_job
from slurm.eta import Eta
from slurm.eta import describe as describe_eta
from slurm.jobs import RunJob, run_config
from slurm.settings import SlurmSettings, executor_parameters

EXECUTORS = ("local", "inline", "slurm", "debug")
IN_PROCESS = ("inline", "debug")  # no interpreter of their own: one GPU at most


# ----------------------------------------------------------------------------- submission


@dataclass
class Submitted:
    cell: Any
    executor: str
    job_id: str
    outcome: str = "queued"  # local/debug: done | failed | held (another process trains it) | skipped (a source failed or is held)
    detail: str = ""


def _write_job(cell: Any, executor: str, job: Any, **extra: Any) -> None:
    info = {
        "executor": executor,
        "job_id": str(job.job_id),
        "submitted": _now(),
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
        **extra,
    }
    write_job(cell.run_dir.path, info)



def waves(cells: list[Any], pending: set[str]) -> list[list[Any]]:
    """Cells in dependency order: a cell comes in a later wave than the runs it needs."""
    order: list[list[Any]] = []
    placed: dict[str, int] = {}
    for cell in cells:
        level = 0
        for source in cell.needs:
            key = str(source.run_dir.path)
            if key in pending:
                if key not in placed:
                    raise ConfigError(f"{cell.describe()}: needs {key}, which is neither done nor in this submission")
                level = max(level, placed[key] + 1)
        placed[str(cell.run_dir.path)] = level
        while len(order) <= level:
            order.append([])
        order[level].append(cell)
    return order


def submit(cells: list[Any], executor: str, folder: Path, settings: SlurmSettings | None = None,
           alive_sources: dict[str, str] | None = None, say: Callable[[str], None] = print,
           jobs: int = 1) -> list[Submitted]:
    """Send `cells` (validated, not done, not queued) to `executor`; sources before dependents.
    `jobs`: runs trained at once here (local and inline executors), sharing this machine's CPUs."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    check_jobs(jobs, executor)
    pending = {str(c.run_dir.path) for c in cells}
    ordered = waves(cells, pending)
    if executor == "slurm":
        return _submit_slurm(ordered, folder, settings or SlurmSettings(), alive_sources or {}, say)
    return _run_in_turn([c for wave in ordered for c in wave], executor, folder, say, jobs)


def check_jobs(jobs: int, executor: str) -> None:
    """One line, before anything runs, for a `--jobs` the executor cannot honour."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if jobs > 1 and executor not in ("local", "inline"):
        raise ConfigError(f"--jobs {jobs} needs the local or inline executor (slurm: --parallelism), not {executor}")


def _run_in_turn(cells: list[Any], executor: str, folder: Path, say: Callable[[str], None],
                 jobs: int = 1) -> list[Submitted]:
    """Train `cells` on this machine, up to `jobs` at once, in their order as far as their sources
    allow (a cell starts once every run it reads has finished; one whose source failed, or is
    trained by another process, is skipped)."""
    done: list[Submitted] = []
    failed: set[str] = set()
    held: set[str] = set()
    width = len(str(len(cells)))
    eta = Eta()
    for cell in cells:  # claimed while they wait their turn: a second submission leaves them to us
        _claim(cell, executor)
    waiting = list(cells)
    running: list[tuple[Any, _Handle, float]] = []
    starting: Any = None  # the cell being launched (an inline run trains inside the launch)
    threads = cpus_available(jobs)
    pool = _worker_pool(jobs, threads) if executor == "inline" and jobs > 1 else None
    try:
        while waiting or running:
            unfinished = {str(c.run_dir.path) for c in waiting} | {str(c.run_dir.path) for c, _, _ in running}
            for cell in list(waiting):
                if len(running) >= jobs:
                    break
                sources = [str(s.run_dir.path) for s in cell.needs]
                broken = [s for s in sources if s in failed]
                busy = [s for s in sources if s in held]
                if broken or busy:
                    waiting.remove(cell)
                    why = f"its source {broken[0]} failed" if broken else f"its source {busy[0]} is trained by another process"
                    done.append(Submitted(cell, executor, "-", "skipped", why))
                    (failed if broken else held).add(str(cell.run_dir.path))
                    _end_claim(cell)
                    say(f"[{len(done):>{width}}/{len(cells)}] {cell.experiment} {cell.describe()}: skipped, {why}")
                    continue
                if any(s in unfinished for s in sources):
                    continue
                waiting.remove(cell)
                starting, tick = cell, time.perf_counter()
                running.append((cell, _launch(executor, folder, cell, pool, threads if jobs > 1 else None), tick))
                starting = None
            if waiting and not running:
                raise RuntimeError(f"{waiting[0].describe()}: waits for a run that is not in this queue")
            while running and not any(handle.done() for _, handle, _ in running):
                time.sleep(0.1)  # submitit's own wait polls once a second
            for entry in [e for e in running if e[1].done()]:
                running.remove(entry)
                cell, handle, tick = entry
                head = f"[{len(done) + 1:>{width}}/{len(cells)}] {cell.experiment} {cell.describe()}"
                try:
                    outcome = handle.outcome()
                except Exception as exc:  # the run's record (if it got that far) holds the reason too
                    outcome = {"status": "failed", "error": handle.describe_error(exc)}
                seconds = time.perf_counter() - tick
                _end_claim(cell)
                if outcome["status"] == "held":
                    held.add(str(cell.run_dir.path))
                    done.append(Submitted(cell, executor, handle.job_id, "held", str(outcome.get("error"))))
                    say(f"{head}: not run here: {outcome.get('error')}")
                    continue
                ok = outcome["status"] in ("done", "skipped")
                detail = (f"top1 {outcome['top1']:.2f} %, FLOPs ratio {outcome['flops_ratio']:.3f}"
                          if ok and outcome.get("top1") is not None else str(outcome.get("error")))
                if not ok:
                    failed.add(str(cell.run_dir.path))
                elif outcome["status"] == "done":  # a run found done already says nothing of the time
                    eta.finished(cell, seconds)
                done.append(Submitted(cell, executor, handle.job_id, "done" if ok else "failed", detail))
                left = waiting + [c for c, _, _ in running]
                estimate = eta.left(left)
                say(f"{head}: {'done' if ok else 'FAILED'}, {detail} ({seconds:.0f} s) -> {cell.run_dir.path}"
                    + describe_eta(None if estimate is None else estimate / jobs, len(left)))
    except KeyboardInterrupt:
        for cell, handle, _ in running:
            handle.cancel()
        for cell in [c for c, _, _ in running] + ([starting] if starting is not None else []):
            say(f"{cell.experiment} {cell.describe()}: interrupted; run the same command again to resume")
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return done


class _Handle:
    """One run started here: `done()`, then `outcome()` (its summary, or the run's exception).
    Wraps a future (a pool worker's run, or an inline run already over) or a submitit job."""

    def __init__(self, job_id: str, future: Future | None = None, job: Any = None, log: str | None = None) -> None:
        self.job_id, self._future, self._job = job_id, future, job
        self.log = log  # where a local job's stderr went

    def done(self) -> bool:
        return self._future.done() if self._future is not None else self._job.done()

    def outcome(self) -> dict[str, Any]:
        return self._future.result() if self._future is not None else self._job.results()[0]  # rank 0's summary

    def describe_error(self, exc: BaseException) -> str:
        text = str(exc).strip()
        detail = text.splitlines()[-1] if text else type(exc).__name__
        if self.log:
            detail += f" (log: {self.log})"
        return detail

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel(check=False)
        else:
            self._future.cancel()


def _launch(executor: str, folder: Path, cell: Any, pool: Any, threads: int | None) -> _Handle:
    """Start `cell`'s run: in this process (inline, one at a time: it has ended when this
    returns), in a worker of `pool` (inline, several at once), or as a submitit job."""
    gpus = cell.cfg.train.gpus
    if executor in IN_PROCESS and gpus > 1:
        raise ConfigError(f"{cell.describe()}: train.gpus={gpus} needs the local or slurm executor, not {executor}")
    config = to_dict(cell.cfg)
    if threads is not None:  # several runs at once: one line per run, no progress bars interleaving
        config["progress"] = False
    if pool is not None:
        return _Handle(f"worker-of-{os.getpid()}", future=pool.submit(run_config, config))
    if executor == "inline":
        size_threads()  # this process's CPUs (its affinity, $S2H_THREADS)
        over: Future = Future()
        try:
            over.set_result(run_config(config))
        except Exception as exc:  # a KeyboardInterrupt goes up to the queue
            over.set_exception(exc)
        return _Handle(str(os.getpid()), future=over)
    job = _start(executor, folder, gpus, config, cell, threads)
    return _Handle(str(job.job_id), job=job, log=str(job.paths.stderr) if executor == "local" else None)


def _worker_pool(jobs: int, threads: int) -> Any:
    """`jobs` fresh interpreters (spawned: a fork would inherit torch's thread pool) that train
    one run after another, each on `threads` CPUs."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))


def _init_worker(threads: int) -> None:
    os.environ[THREADS_VARIABLE] = str(threads)
    size_threads()


def _start(executor: str, folder: Path, gpus: int, config: dict[str, Any], cell: Any,
           threads: int | None = None) -> Any:
    """Submit one run to submitit's local (a fresh interpreter) or debug (this process) executor;
    `threads`: the CPUs it may use when several runs share this machine."""
    import torch

    if executor == "debug":
        return submitit.DebugExecutor(folder=folder).submit(RunJob(config))
    ex = submitit.LocalExecutor(folder=folder)
    visible = min(gpus, torch.cuda.device_count())
    ex.update_parameters(timeout_min=7 * 24 * 60, tasks_per_node=gpus, gpus_per_node=visible)
    previous = os.environ.get(THREADS_VARIABLE)
    if threads is not None:
        os.environ[THREADS_VARIABLE] = str(max(1, threads // max(1, gpus)))  # the child's environment
    try:
        job = ex.submit(RunJob(config))
    finally:
        if threads is not None and previous is None:
            del os.environ[THREADS_VARIABLE]
        elif threads is not None:
            os.environ[THREADS_VARIABLE] = previous
    _write_job(cell, executor, job, pid=os.getpid(), host=hostname())  # alive while this process waits for it
    return job


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _end_claim(cell: Any) -> None:
    job = read_job(cell.run_dir.path)
    if job.get("pid") == os.getpid():
        write_job(cell.run_dir.path, {**job, "ended": _now()})


def _claim(cell: Any, executor: str) -> None:
    """Mark a cell as queued by this process (alive while it is), until its job starts."""
    write_job(cell.run_dir.path, {"executor": executor if executor != "debug" else "inline",
                                  "job_id": f"queued-in-{os.getpid()}", "pid": os.getpid(),
                                  "host": hostname(), "submitted": _now()})


def _submit_slurm(ordered: list[list[Any]], folder: Path, settings: SlurmSettings, alive_sources: dict[str, str],
                  say: Callable[[str], None]) -> list[Submitted]:
    submitted: list[Submitted] = []
    job_ids = dict(alive_sources)  # run folder -> SLURM job id, for dependencies
    for level, wave in enumerate(ordered):
        shapes: dict[int, list[Any]] = {}
        for cell in wave:
            shapes.setdefault(cell.cfg.train.gpus, []).append(cell)
        for gpus, cells in shapes.items():
            ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=settings.max_requeues)
            params = executor_parameters(settings, gpus, f"s2h-{cells[0].experiment}")
            sources = sorted({job_ids[str(s.run_dir.path)] for c in cells for s in c.needs if str(s.run_dir.path) in job_ids})
            if sources:
                extra = dict(params.get("slurm_additional_parameters", {}))
                extra["dependency"] = "afterok:" + ":".join(sources)
                params["slurm_additional_parameters"] = extra
            ex.update_parameters(**params)
            with ex.batch():
                jobs = [ex.submit(RunJob(to_dict(cell.cfg))) for cell in cells]
            for cell, job in zip(cells, jobs):
                _write_job(cell, "slurm", job)
                job_ids[str(cell.run_dir.path)] = str(job.job_id)
                submitted.append(Submitted(cell, "slurm", str(job.job_id)))
                after = f" after {', '.join(sources)}" if sources else ""
                say(f"{cell.experiment} {cell.describe()} -> slurm job {job.job_id}{after} ({cell.run_dir.path})")
    return submitted
