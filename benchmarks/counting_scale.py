"""Counting the statistics at scale: time and peak memory of in-memory and sharded counting.

Each measurement runs in a child process (``python -m benchmarks.counting_scale``) that streams
prompts from a text file, counts them and writes a digest of every array it built; the parent
samples the memory of the child's whole process tree (PSS, so pages shared by forked workers
count once) and compares digests: equal digests mean identical arrays. The synthetic corpus is
the real one plus recombinations of its phrases, generated into a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

SAMPLE_SECONDS = 0.2


def synthetic_prompts(prompts: Sequence[str], factor: int, seed: int = 1234) -> Iterator[str]:
    """``factor`` times as many distinct prompts: ``prompts`` themselves, then prompts that keep
    the first comma-separated phrase of a random prompt and take each following phrase from
    another random prompt (as many phrases as the first prompt had, at least two)."""
    rng = random.Random(seed)
    seen: set[int] = set()
    for prompt in prompts:
        seen.add(hash(prompt))
        yield prompt
    wanted = (factor - 1) * len(prompts)
    while wanted:
        phrases = prompts[rng.randrange(len(prompts))].split(", ")
        for slot in range(1, max(2, len(phrases))):
            other = prompts[rng.randrange(len(prompts))].split(", ")
            phrases[slot : slot + 1] = [other[rng.randrange(len(other))]]
        text = ", ".join(phrases)
        if hash(text) not in seen:
            seen.add(hash(text))
            wanted -= 1
            yield text


def write_lines(lines: Iterator[str], path: Path) -> int:
    """Write one prompt a line; return how many."""
    written = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")
            written += 1
    return written


def _read_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="\n") as handle:
        for line in handle:
            yield line[:-1]


def _tree_pss_kb(root: int) -> int:
    """PSS of ``root`` and all its descendants, in kB (0 for processes already gone)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def measure(arguments: Sequence[str], digest_path: Path) -> dict[str, Any]:
    """Run one counting child; its wall time, CPU time (workers included), peak memory and
    what it built."""
    command = [sys.executable, "-m", "benchmarks.counting_scale", *arguments]
    command += ["--digest", str(digest_path)]
    began = time.perf_counter()
    child = subprocess.Popen(command)
    peak = [0]
    done = threading.Event()

    def sample() -> None:  # at once, then every SAMPLE_SECONDS: a quick child is seen too
        while True:
            peak[0] = max(peak[0], _tree_pss_kb(child.pid))
            if done.wait(SAMPLE_SECONDS):
                break

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")
    built = json.loads(digest_path.read_text(encoding="utf-8"))
    return {
        "count_seconds": round(time.perf_counter() - began, 1),
        "count_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_tree_pss_mb": round(peak[0] / 1024),
        "largest_process_rss_mb": round(usage.ru_maxrss / 1024),
        "ngrams": built["ngrams"],
        "digest": built["digest"],
    }


def _digest(counts: Any) -> tuple[str, list[int]]:
    """A sha256 over every array (dtype, shape and bytes), the discounts and the vocabulary;
    and the number of n-grams of each order."""
    import numpy as np

    digest = hashlib.sha256("\n".join(counts.vocab).encode())
    arrays = [counts.unigram, np.array([counts.unknown_probability])]
    for level in counts.orders:
        arrays += [np.array([level.discount])]
        fields = (level.keys, level.start, level.total, level.words, level.counts, level.backoff)
        arrays += [field for field in fields if field is not None]
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest(), [len(counts.vocab), *(len(level.words) for level in counts.orders)]


def _count_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.counting_scale")
    parser.add_argument("prompts", type=Path, help="one prompt a line")
    parser.add_argument("--method", choices=("memory", "sharded"), required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shard-prompts", type=int)
    parser.add_argument("--scratch", type=Path)
    parser.add_argument("--digest", type=Path, required=True)
    args = parser.parse_args(argv)
    from model_store.ngram import counting, sharded

    prompts = _read_lines(args.prompts)
    if args.method == "memory":
        counts = counting.count(prompts)
    else:
        shard_prompts = args.shard_prompts or sharded.SHARD_PROMPTS
        counts = sharded.count(
            prompts, workers=args.workers, shard_prompts=shard_prompts, scratch=args.scratch
        )
    digest, ngrams = _digest(counts)
    args.digest.write_text(json.dumps({"digest": digest, "ngrams": ngrams}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_count_main())
