"""Runs across processes, GPUs and machines with ``torch.distributed``, launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` in each process it
starts; without them a run is one process and nothing here opens a process group. Jobs are sharded by
image (`shard`), so each rank reads each of its images once and computes every method and case on
them. Rank 0 writes the tables, figures and report after the others finish (`Ranks.barrier`).

Two layouts of the run directory:

* shared (one filesystem seen by every rank, the usual cluster setup): each rank writes its own
  jobs' files into the common run directory, and rank 0 reads them all;
* not shared (each machine its own disk): each rank writes locally, then sends the files it wrote to
  rank 0 through collectives (`send_files_to_main`), so rank 0 ends with the same run directory.

Which one applies is found out, not assumed: rank 0 writes a random token into the run directory and
every rank looks for it (`run_dir_is_shared`).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

import torch
import torch.distributed as dist

from bench.run.rundir import write_bytes

T = TypeVar("T")

#: How long a rank may wait for the others at a collective. Ranks finish their shards at different
#: times (a shard can take hours more than another), so the 30-minute default would fail good runs;
#: a dead rank is noticed by torchrun, which stops the job, not by this timeout.
COLLECTIVE_TIMEOUT = timedelta(days=7)
#: Bytes of file content sent to rank 0 per collective round (bounds the memory of a round).
MIRROR_CHUNK_BYTES = 64 * 2 ** 20


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: global and local rank and world sizes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run-wide files (rows, tables, figures, report)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> str:
        """``cuda:LOCAL_RANK`` when CUDA is there, else ``cpu``."""
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def cpu_threads(self) -> int:
        """Intra-op threads for this rank: the machine's cores split between its local ranks."""
        return max(1, (os.cpu_count() or 1) // self.local_world_size)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value`` (picklable), in rank order, on rank 0; ``None`` on the others."""
        if not self.distributed:
            return [value]
        received: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, received, dst=0)
        return received

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_max(self, value: int) -> int:
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())


def _environment_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    return int(text) if text not in (None, "") else default


def ranks_from_environment() -> Ranks:
    """The ranks ``torchrun`` set in the environment, or one process when it did not."""
    world_size = _environment_int("WORLD_SIZE", 1)
    return Ranks(rank=_environment_int("RANK", 0), world_size=world_size,
                 local_rank=_environment_int("LOCAL_RANK", 0),
                 local_world_size=_environment_int("LOCAL_WORLD_SIZE", world_size))


def start(ranks: Ranks) -> None:
    """Join the process group (NCCL for CUDA tensors and gloo for the CPU ones the suite sends, or
    gloo alone without CUDA), pin this rank's GPU and set its CPU thread count."""
    if not ranks.distributed or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl", timeout=COLLECTIVE_TIMEOUT)
    else:
        torch.set_num_threads(ranks.cpu_threads())
        dist.init_process_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], ranks: Ranks) -> list[T]:
    """Rank ``r``'s items: every ``world_size``-th from position ``r`` (round robin over the given order).

    A pure function of the order, the rank and the world size, so every rank agrees on the split
    without talking, and the union over ranks is every item exactly once.
    """
    return list(items[ranks.rank::ranks.world_size])


def run_dir_is_shared(token_path: Path, ranks: Ranks) -> bool:
    """Whether every rank sees the file rank 0 writes at ``token_path`` in the run directory (one
    filesystem)."""
    if not ranks.distributed:
        return True
    token = secrets.token_hex(16) if ranks.is_main else None
    if ranks.is_main:
        write_bytes(token_path, token.encode("ascii"))
    token = ranks.broadcast(token)
    try:
        seen = token_path.read_text(encoding="ascii") == token
    except OSError:
        seen = False
    everywhere = ranks.gather(seen)
    shared = ranks.broadcast(all(everywhere) if everywhere is not None else None)
    ranks.barrier()
    if ranks.is_main:
        token_path.unlink(missing_ok=True)
    return bool(shared)


def send_files_to_main(run_dir: Path, relative_paths: Iterable[str], ranks: Ranks) -> int:
    """Copy files of this rank's run directory into rank 0's, through collectives.

    Every rank calls it (rank 0 with its own paths, which it already has and does not send). Files go
    in rounds of at most `MIRROR_CHUNK_BYTES` per rank. Returns how many files rank 0 wrote.
    """
    if not ranks.distributed:
        return 0
    rounds: list[list[str]] = []
    if not ranks.is_main:
        current: list[str] = []
        size = 0
        for relative in relative_paths:
            path = run_dir / relative
            if not path.is_file():
                continue
            current.append(relative)
            size += path.stat().st_size
            if size >= MIRROR_CHUNK_BYTES:
                rounds.append(current)
                current, size = [], 0
        if current:
            rounds.append(current)
    written = 0
    for index in range(ranks.all_max(len(rounds))):
        batch = [(relative, (run_dir / relative).read_bytes()) for relative in rounds[index]] \
            if index < len(rounds) else []
        received = ranks.gather(batch)
        if received is None:
            continue
        for sender_batch in received[1:]:
            for relative, content in sender_batch:
                target = (run_dir / relative).resolve()
                # Names come from another rank of the same run; still, nothing lands outside run_dir.
                if run_dir.resolve() not in target.parents:
                    raise ValueError(f"rank sent a file outside the run directory: {relative!r}")
                write_bytes(target, content)
                written += 1
    return written
