"""One job over several processes (``torchrun`` / ``accelerate launch``): which rank does what (docs/design.md §3).

Every rank runs the whole job. Rank 0 is the only writer: it takes the artifact store's lock, builds what one
process builds (data, samples, scores), writes results.json and owns the W&B run; the other ranks join every
training stage (TRL's trainer runs on all of them, each on its shard of the batch) and otherwise wait for rank 0
at a barrier, then read what it wrote. A rank never waits on a file lock for a sibling rank: every wait is a
collective with ``distributed_timeout`` seconds, after which it stops with one line naming the step and the
likely cause (a rank that died or hangs). With one process every function here is a no-op.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from mpo.infra.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")
# how gloo and NCCL word a sibling that died or stopped answering, in the RuntimeError a collective raises
TRANSPORT_ERRORS = ("third_party/gloo", "Connection reset by peer", "Connection closed by peer", "Broken pipe",
                    "NCCL communicator was aborted", "Watchdog caught collective operation timeout", "Timed out")


class RankError(UserError):
    """A rank gave up waiting for the others (a sibling died, hung, or diverged)."""


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def world_size() -> int:
    """Processes of this job (torchrun and accelerate set WORLD_SIZE)."""
    return _env_int("WORLD_SIZE", default=1)


def rank() -> int:
    """This process's rank (RANK, else LOCAL_RANK; 0 in a single process)."""
    return _env_int("RANK", "LOCAL_RANK", default=0)


def is_main() -> bool:
    return rank() == 0


def hydra_overrides() -> list[str]:
    """Overrides for a rank other than 0: a scratch run dir of its own (the job's Hydra dir, results.json and
    W&B run are rank 0's)."""
    if is_main():
        return []
    import tempfile

    return [f"hydra.run.dir={tempfile.mkdtemp(prefix=f'mpo-rank{rank()}-')}"]


def quiet_other_ranks() -> None:
    """Only rank 0 speaks on the console below a warning: the others repeat its steps."""
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)


def init(timeout_seconds: float) -> None:
    """Join the job's process group (gloo on CPU, nccl on GPU) through accelerate, whose state TRL's trainers
    then share; ``timeout_seconds`` bounds every collective, so no rank waits for a dead sibling forever."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    if not dist.is_initialized():
        PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(seconds=timeout_seconds))
    log.debug("rank %d of %d joined the process group", rank(), world_size())


def _collective(what: str, call, *args):
    import torch.distributed as dist

    try:
        return call(*args)
    except (RuntimeError, dist.DistBackendError) as err:
        raise _lost(what, err) from err


@contextmanager
def lost_ranks_said(what: str) -> Iterator[None]:
    """Code that runs collectives we do not call ourselves (a TRL trainer's gradient all-reduce and metric
    gathers): a lost sibling there, which gloo and NCCL report as a transport error or a timeout, is the same
    one line as in our own collectives; any other error passes unchanged (a bug keeps its traceback)."""
    try:
        yield
    except RuntimeError as err:
        if world_size() == 1 or not _is_transport_error(err):
            raise
        raise _lost(what, err) from err


def _is_transport_error(err: RuntimeError) -> bool:
    import torch.distributed as dist

    text = str(err)
    return isinstance(err, dist.DistBackendError) or any(mark in text for mark in TRANSPORT_ERRORS)


def _lost(what: str, err: BaseException) -> RankError:
    return RankError(f"rank {rank()} of {world_size()} lost the other ranks while {what} ({_first_line(err)}): "
                     "a rank died, hangs or took another path; its own log says why. Rerun the job: finished "
                     "artifacts are reused (raise distributed_timeout if a step legitimately takes longer)")


def _first_line(err: BaseException) -> str:
    """The error's first line, less gloo's ``[third_party/.../pair.cc:537]`` source location."""
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", str(err).strip()).splitlines()
    return text[0][:160] if text else type(err).__name__


def barrier(what: str) -> None:
    """Wait until every rank reaches this point (``what`` names it in the timeout message)."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    _collective(what, dist.barrier)


def broadcast(obj: T, what: str) -> T:
    """Rank 0's ``obj`` on every rank (a picklable value: a decision, a path)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj if is_main() else None]
    _collective(what, dist.broadcast_object_list, box, 0)
    return box[0]


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th one from its rank (``gather`` undoes it)."""
    return list(items[rank()::world_size()])


def gather(local: Sequence[Any], what: str) -> list[Any]:
    """The items every rank's ``shard`` produced, back in their original order, on every rank."""
    if world_size() == 1:
        return list(local)
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    _collective(what, dist.all_gather_object, parts, list(local))
    out: list[Any] = []
    for i in range(max(len(p) for p in parts)):
        out.extend(p[i] for p in parts if i < len(p))
    return out


def close() -> None:
    """Leave the process group (at the end of the job) so the launcher sees a clean exit."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
