"""One training job over several processes (``torchrun``, ``accelerate launch``).

The launchers start the same command once per process and describe the job in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``). Rank 0 alone prepares
(corpus cache, tokenizer, token arrays), exports and publishes; the others wait for it at a
barrier of the job's process group, which the Trainer then reuses for its gradients. Without
those variables everything here is a no-op, so a plain process never imports torch.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")

# Rank 0 may spend long preparing a whole corpus (cleaning, tokenizer, token arrays) while the
# others wait at a barrier; the launchers end the job if any process fails, so a long wait
# never hides an error.
PREPARE_TIMEOUT = timedelta(hours=2)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in a single process and in rank 0 of a job: the one that writes shared files."""
    return rank() == 0


def join() -> None:
    """Join the job's process group: NCCL between GPUs (one per local rank), gloo on CPUs."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=PREPARE_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=PREPARE_TIMEOUT)


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def share(value: T) -> T:
    """Rank 0's ``value`` on every rank, so that all of them take the same branch."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (writing caches), then the others run it (reading them)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
