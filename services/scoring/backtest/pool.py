"""Run jobs in worker processes, each job in its own, hearing how far each has got.

The backtest's replay is CPU-bound Python: one process uses one core. A worker is a
fresh interpreter started as ``python -m services.scoring.backtest.pool``, not a fork
(forking a process that runs an event loop and a progress bar's thread copies them
half-alive) and not ``multiprocessing``'s spawn (which runs the caller's main script
again in the worker: a script without a ``__main__`` guard, or a notebook, would start
workers without end). So a job and its result must pickle, and a job's function must
be importable at module level.

The worker reads ``pickle((function, job, gc thresholds))`` on its standard input and answers on its
standard output in frames, a kind byte and an 8-byte big-endian number: ``T n`` (the
job ticked ``n``), ``R size`` then the pickled result, or ``E size`` then the failure's
traceback as text. Its standard error is the parent's: its warnings show as they would
in one process.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import BinaryIO, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")
Tick = Callable[[int], None]

TICK, RESULT, FAILED = b"T", b"R", b"E"
HEADER = 9  # the kind byte and the number


class WorkerFailed(RuntimeError):
    """A worker process raised (its traceback in the message) or died."""


async def run_in_processes(
    function: Callable[[Job, Tick], Result],
    jobs: Sequence[Job],
    progress: Callable[[list[int]], None],
) -> list[Result]:
    """``function(job, tick)`` for each job in a process of its own, all at once; the
    results in the jobs' order. ``progress`` hears what each job last ticked whenever
    one ticks. A job that raises, or a worker that dies, stops them all
    (``WorkerFailed``)."""
    done = [0] * len(jobs)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in jobs
    ]

    async def drive(number: int) -> Result:
        worker = workers[number]
        assert worker.stdin is not None and worker.stdout is not None
        # The parent's garbage collection thresholds too: a command that made full
        # collections rarer (cli.collecting) wants them so in its workers.
        sent = (function, jobs[number], gc.get_threshold())
        worker.stdin.write(pickle.dumps(sent, pickle.HIGHEST_PROTOCOL))
        await worker.stdin.drain()
        worker.stdin.close()
        while True:
            try:
                header = await worker.stdout.readexactly(HEADER)
            except asyncio.IncompleteReadError:
                code = await worker.wait()
                raise WorkerFailed(
                    f"backtest worker {number} stopped with exit code {code} "
                    "(killed? out of memory? try fewer --workers)"
                ) from None
            kind, size = header[:1], int.from_bytes(header[1:], "big")
            if kind == TICK:
                done[number] = size
                progress(list(done))
                continue
            body = await worker.stdout.readexactly(size)
            await worker.wait()
            if kind == FAILED:
                raise WorkerFailed(f"backtest worker {number} failed:\n{body.decode()}")
            result: Result = pickle.loads(body)
            return result

    driven = [asyncio.ensure_future(drive(k)) for k in range(len(jobs))]
    try:
        return list(await asyncio.gather(*driven))
    finally:  # one failed (or the caller was cancelled): stop the others
        for task in driven:
            task.cancel()
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
        waits = [worker.wait() for worker in workers]
        await asyncio.gather(*driven, *waits, return_exceptions=True)


def _frame(out: BinaryIO, kind: bytes, number: int, body: bytes = b"") -> None:
    out.write(kind + number.to_bytes(HEADER - 1, "big") + body)
    out.flush()


def main() -> None:
    """A worker process: one job from standard input, its result to standard output.
    Anything else the job prints goes to standard error, not into the frames."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    function, job, thresholds = pickle.load(sys.stdin.buffer)
    gc.set_threshold(*thresholds)
    try:
        result = pickle.dumps(
            function(job, lambda count: _frame(out, TICK, count)), pickle.HIGHEST_PROTOCOL
        )
    except BaseException as exc:  # everything goes back to the parent, to be raised there
        failure = "".join(traceback.format_exception(exc)).encode()
        _frame(out, FAILED, len(failure), failure)
        raise SystemExit(1) from None
    _frame(out, RESULT, len(result), result)


if __name__ == "__main__":
    main()
