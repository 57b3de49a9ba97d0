"""Regenerate docs/BENCHMARKS.md: ``python -m benchmarks.run [--quick] [--systems ...]``.

Results are kept in ``benchmarks/results.json`` beside the report and merged run by run, so a later
run of one section or one system (the engine, say) replaces only its rows;
``--fresh`` starts over. Every row records the command, date and commit that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import importlib.util
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import data, expansion, personal, report, vocabulary
from benchmarks.benchmarked import Benchmarked, Context, model_identity, resolve_model
from benchmarks.ksr import KsrResult, MemoSystem, evaluate
from benchmarks.lsp_driver import LoopThread, LspDriver, LspSystem, ServerUnavailable
from benchmarks.stats import percentiles
from benchmarks.systems import REGISTRY, parse_spec
from client_tui.lsp import default_server_command
from model_store.corpus import CORPUS_ENV
from model_store.paths import CACHE_ENV, STORE_ENV
from model_store.store import ModelStore

SECTIONS = ("ksr", "blend", "pack", "perplexity", "expansion", "server", "vocabulary")
# Counting the statistics of the corpus and of one 5x its size takes about an hour on 2 busy
# cores, and the personal layer's measurements most of an hour: they run only when asked for
# (--sections scale, --sections personal).
ON_REQUEST = ("scale", "personal")
SCALE_FACTOR = 5
SCALE_WORKERS = 2
# The study's masked LM is slow to drive (KSR 786 s for 30 prompts, expansion 816 s for 200
# ideas on 2 cores): it runs on its own so that the default run fits an hour.
DEFAULT_SYSTEMS = "none,prefix,ngram,ngram:5,engine,blend,lsp,study-lstm"
COLD_START_TEXT = "a portrait of a wo"
EXPANSIONS_PER_IDEA = 4
EXAMPLES = 10
BLEND_WEIGHTS = (0.0, 0.1, 0.3, 0.5, 1.0)  # the LM's share; 0 = corpus statistics alone


@dataclass(frozen=True)
class Sizes:
    """How much of the data each section uses (documented in the report)."""

    sample: int = data.KSR_SAMPLE_SIZE  # KSR prompts for fast systems
    model_sample: int = 100  # KSR prompts for model-backed systems (a prefix of the sample)
    lsp_sample: int = 20  # KSR prompts typed through the language server
    perplexity_prompts: int = 2000  # seeded sample of cleaned dev prompts; 0 = all of them
    ideas: int = 200
    latency_prompts: int = 20
    pipeline_calls: int = 200
    tune_prompts: int = 40  # dev prompts outside the KSR sample, per blend weight
    pack_sample: int = 100  # KSR prompts per statistics size in the pack's curve
    vocabulary_sample: int = 100  # modern and dev prompts typed through prompt-ls per tag setting


QUICK = Sizes(
    sample=20,
    model_sample=5,
    lsp_sample=2,
    perplexity_prompts=300,
    ideas=10,
    latency_prompts=2,
    pipeline_calls=20,
    tune_prompts=2,
    pack_sample=2,
    vocabulary_sample=2,
)
# Relative-entropy thresholds of the pack's size/quality curve (Stolcke pruning; larger:
# smaller). The full statistics are the curve's last point.
PACK_PRUNING = (1e-6, 3e-7, 1e-7, 5e-8)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=data.REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=data.REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_metadata(command: str) -> dict[str, Any]:
    return {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def _clock() -> tuple[float, float]:
    """(wall, CPU of this process) now: on a shared machine CPU time shows the real cost."""
    return time.perf_counter(), time.process_time()


def _elapsed(began: tuple[float, float]) -> dict[str, float]:
    return {
        "seconds": round(time.perf_counter() - began[0], 1),
        "cpu_seconds": round(time.process_time() - began[1], 1),
    }


def _stamp(
    row: dict[str, Any],
    meta: dict[str, Any],
    began: tuple[float, float],
    system: Benchmarked | None = None,
) -> dict[str, Any]:
    row.update(command=meta["command"], date=meta["date"], commit=meta["commit"], **_elapsed(began))
    if system is not None and system.spec:
        row["system"] = system.spec
    if system is not None and system.model:
        row["model"] = system.model
    return row


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {k: round(v * 1000, 2) for k, v in percentiles(values).items()}


# ------------------------------------------------------------------------------ building
def _build(
    context: Context, spec: str, runner: LoopThread | None, server_command: Sequence[str]
) -> Benchmarked:
    """The system for ``spec``; a failure becomes a row saying why rather than ending the run."""
    key, argument = parse_spec(spec)
    try:
        if key == "lsp":
            built = _lsp_system(runner, server_command, fresh=argument == "fresh")
        else:
            built = REGISTRY[key](context, argument)
    except Exception as exc:
        _log(f"cannot prepare {spec}:\n{traceback.format_exc()}")
        built = Benchmarked(name=spec, unavailable=f"failed to load: {exc!r}")
    built.spec = built.spec or spec  # a builder may name its canonical spec
    return built


def _lsp_system(
    runner: LoopThread | None, server_command: Sequence[str], fresh: bool = False
) -> Benchmarked:
    """``prompt-ls`` as this machine's store has it, or (``fresh``) as a fresh install has
    it: an empty store and no corpus, so only what the package ships."""
    environment: dict[str, str | None] = {}
    if fresh:
        empty = Path(tempfile.mkdtemp(prefix="fresh-store-"))
        environment = {STORE_ENV: str(empty), CORPUS_ENV: None, CACHE_ENV: None}
        name = "prompt-ls: fresh install, empty store, no corpus (LSP)"
    else:
        store = ModelStore()
        statistics = store.statistics_label(store.resolve("default").path)
        name = f"prompt-ls: default + {statistics} corpus statistics (LSP)"
    if runner is None:
        return Benchmarked(name=name, model_backed=True, unavailable="no event loop")
    driver = LspDriver(server_command, log_path=_server_log(), environment=environment)
    try:
        runner.run(driver.start(), timeout=180)
        runner.run(driver.wait_until_serving(), timeout=200)
    except ServerUnavailable as exc:
        runner.run(driver.stop(), timeout=30)
        return Benchmarked(name=name, model_backed=True, unavailable=str(exc))
    return Benchmarked(
        name=name,
        system=LspSystem(driver, runner, name),
        model_backed=True,
        close=lambda: runner.run(driver.stop(), timeout=60),
    )


def _server_log() -> Path:
    path = data.REPO_ROOT / "build" / "benchmarks" / "server-stderr.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------ sections
def ksr_rows(system: Benchmarked, targets: Sequence[str]) -> dict[str, Any]:
    """KSR with ghost and menu, then ghost only (reusing cached answers), and call latencies."""
    assert system.system is not None
    memo = MemoSystem(system.system)
    progress = _progress(system.name)
    full = evaluate(memo, targets, use_menu=True, progress=progress)
    ghost_only = evaluate(memo, targets, use_menu=False, progress=progress)
    row: dict[str, Any] = {
        "prompts": len(targets),
        "ksr": round(full.ksr, 4),
        "ksr_ghost_only": round(ghost_only.ksr, 4),
        "acceptances": full.total_acceptances,
        "acceptances_by_kind": full.acceptances,
        "chars_per_acceptance": round(full.chars_per_acceptance, 2),
        "characters": full.characters,
        "keystrokes": full.keystrokes,
        "latency_ms": _ms(memo.latencies),
        "calls": len(memo.latencies),
        "per_prompt": _per_prompt(full, ghost_only),
    }
    if isinstance(system.system, LspSystem):  # the server's memory budget, pack included
        row["peak_rss_mb"] = round(system.system.driver.peak_rss_bytes() / 2**20, 1)
    kinds = getattr(system.system, "latencies", None)
    if isinstance(kinds, dict) and not isinstance(system.system, LspSystem):
        row["latency_by_kind_ms"] = {kind: _ms(v) for kind, v in kinds.items() if v}
    return row


def _per_prompt(full: KsrResult, ghost_only: KsrResult) -> list[list[int]]:
    """[characters, keystrokes with menu, keystrokes ghost only] per prompt, for subsets."""
    return [
        [c, k, g] for (c, k), (_, g) in zip(full.per_prompt, ghost_only.per_prompt, strict=True)
    ]


def _progress(name: str) -> Callable[[int, int], None]:
    last = [time.perf_counter()]

    def report_progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            _log(f"  {name}: {done}/{total} prompts")

    return report_progress


def run_ksr(
    systems: list[Benchmarked], sizes: Sizes, directory: Path, meta: dict[str, Any]
) -> dict[str, Any]:
    sample = data.ksr_sample(
        data.dev_lines(directory), max(sizes.sample, sizes.model_sample, sizes.lsp_sample)
    )
    rows: dict[str, Any] = {}
    for system in systems:
        began = _clock()
        if system.system is None:
            if system.unavailable:
                rows[system.name] = _stamp({"unavailable": system.unavailable}, meta, began, system)
            continue
        if isinstance(system.system, LspSystem):
            count = sizes.lsp_sample
        else:
            count = sizes.model_sample if system.model_backed else sizes.sample
        _log(f"KSR {system.name} on {count} prompts")
        row = _guarded(f"KSR {system.name}", lambda s=system, n=count: ksr_rows(s, sample[:n]))
        rows[system.name] = _stamp(row, meta, began, system)
        if "ksr" in row:
            _log(
                f"  KSR {row['ksr']:.4f} (ghost only {row['ksr_ghost_only']:.4f}) "
                f"in {rows[system.name]['seconds']} s"
            )
    return rows


def _guarded(what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one measurement; an exception becomes an "unavailable" row, logged in full."""
    try:
        return measure()
    except Exception as exc:
        _log(f"{what} failed:\n{traceback.format_exc()}")
        return {"unavailable": f"failed: {exc!r}"}


def run_blend(context: Context, sizes: Sizes, meta: dict[str, Any]) -> dict[str, Any]:
    """The blend's ablation: KSR of the default model's engine at each weight of the LM.

    Measured on dev prompts outside the KSR sample, where the product's weight was chosen.
    """
    from benchmarks.engine_system import EngineSystem
    from server.engine import CompletionEngine
    from server.engine.types import EngineSettings

    targets = data.tuning_sample(data.dev_lines(context.data_dir), sizes.tune_prompts)
    model_dir = resolve_model("default")
    engine = CompletionEngine.from_checkpoint(
        model_dir, threads=context.threads, word_stats=context.ngram
    )
    product = EngineSettings()
    # Every weight with the product's LM cut-off, then the product's weight with the LM
    # rescoring every letter of a word.
    variants = [(weight, product.blend_lm_letters) for weight in BLEND_WEIGHTS]
    variants.append((product.blend_weight, None))
    rows = []
    for weight, letters in variants:
        began = _clock()
        engine.update_settings(EngineSettings(blend_weight=weight, blend_lm_letters=letters))
        name = f"blend weight {weight}, LM until letter {'any' if letters is None else letters}"
        system = Benchmarked(name=name, system=EngineSystem(engine, name), model_backed=True)
        _log(f"KSR {name} on {len(targets)} tuning prompts")
        row = _guarded(name, lambda s=system: ksr_rows(s, targets))
        row.pop("per_prompt", None)
        rows.append(_stamp({"weight": weight, "lm_letters": letters, **row}, meta, began, system))
    return {
        "prompts": len(targets),
        "product_weight": product.blend_weight,
        "product_lm_letters": product.blend_lm_letters,
        "model": model_identity(model_dir),
        "rows": rows,
    }


def run_pack(context: Context, sizes: Sizes, meta: dict[str, Any]) -> dict[str, Any]:
    """The statistics' size/quality curve: KSR of the default model's engine blended with the
    full statistics and with packs pruned at each of ``PACK_PRUNING``, on the first
    ``pack_sample`` prompts of the KSR sample. Packs are built from the full statistics once
    (``prompt-models stats --pack`` does the same) and kept in the benchmark cache."""
    from benchmarks.engine_system import EngineSystem
    from model_store.ngram import counting, storage
    from server.engine import CompletionEngine
    from server.engine.types import EngineSettings

    targets = data.ksr_sample(data.dev_lines(context.data_dir), data.KSR_SAMPLE_SIZE)
    targets = targets[: sizes.pack_sample]
    model_dir = resolve_model("default")
    digest = context.train.sha256
    full_dir = storage.stats_dir(digest)
    full = context.ngram  # built if need be, then mapped whole for pruning
    everything = storage.load(full_dir, storage.rebuild_hint(full_dir), piecewise=False)
    rows = []
    for threshold in (*PACK_PRUNING, None):
        began = _clock()
        if threshold is None:
            name, directory, stats = "full statistics", full_dir, full
        else:
            name = f"pack pruned at {threshold:g}"
            directory = context.cache_root / "packs" / f"{digest[:16]}-{threshold:g}"
            if not (directory / storage.META).is_file():
                _log(f"building the {name}")
                scores = storage.pruning_scores(full_dir, everything)
                pruned = counting.prune(everything, threshold, scores)
                storage.save(pruned, directory, quantised=True, name=name)
            stats = storage.load(directory, f"remove {directory} and run again")
        engine = CompletionEngine.from_checkpoint(
            model_dir,
            settings=EngineSettings(menu_skips_ghost=True),
            threads=context.threads,
            word_stats=stats,
        )
        system = Benchmarked(name=name, system=EngineSystem(engine, name), model_backed=True)
        _log(f"KSR {name} on {len(targets)} prompts")
        row = _guarded(name, lambda s=system: ksr_rows(s, targets))
        row.pop("per_prompt", None)
        size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
        row.update(
            threshold=threshold,
            megabytes=round(size / 1e6, 1),
            zipped_megabytes=round(_zipped_size(directory) / 1e6, 1),
            ngrams=sum(len(level.words) for level in stats.levels),
        )
        rows.append(_stamp(row, meta, began, system))
    return {
        "prompts": len(targets),
        "shipped_threshold": _shipped_threshold(),
        "model": model_identity(model_dir),
        "rows": rows,
    }


def _zipped_size(directory: Path) -> int:
    """Bytes the files of ``directory`` take deflated, as in the wheel (what its limit counts)."""
    with tempfile.TemporaryFile() as scratch:
        with zipfile.ZipFile(scratch, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(directory.iterdir()):
                if file.is_file():
                    archive.write(file, file.name)
        return scratch.tell()


def _shipped_threshold() -> float | None:
    """The pruning threshold of the pack in the package (its manifest says)."""
    from model_store.checkpoint import CheckpointError, read_manifest
    from model_store.store import DEFAULT_STATS_DIR

    try:
        pruning = read_manifest(DEFAULT_STATS_DIR).get("pruning", {})
    except CheckpointError:
        return None
    threshold = pruning.get("relative_entropy") if isinstance(pruning, dict) else None
    return float(threshold) if isinstance(threshold, int | float) else None


def run_perplexity(
    systems: list[Benchmarked], sizes: Sizes, directory: Path, meta: dict[str, Any]
) -> dict[str, Any]:
    prompts = data.dev_corpus(directory).prompts
    if sizes.perplexity_prompts and sizes.perplexity_prompts < len(prompts):
        prompts = random.Random(data.SEED).sample(prompts, sizes.perplexity_prompts)
    rows: dict[str, Any] = {}
    for system in systems:
        if system.perplexity is None:
            continue
        began = _clock()
        _log(f"perplexity {system.name} on {len(prompts)} dev prompts")
        measure = system.perplexity
        result = _guarded(
            f"perplexity {system.name}",
            lambda m=measure: {
                k: round(v, 4) if isinstance(v, float) else v for k, v in m(prompts).items()
            },
        )
        rows[system.name] = _stamp(result, meta, began, system)
    return rows


def run_expansion(
    systems: list[Benchmarked], sizes: Sizes, context: Context, meta: dict[str, Any]
) -> dict[str, Any]:
    lines = data.dev_lines(context.data_dir)
    ideas = expansion.ideas_from(lines, sizes.ideas)
    capable = [s for s in systems if s.expand is not None]
    rows: dict[str, Any] = {}
    for system in systems:
        if system.expand is None and system.unavailable and system.expands:
            rows[system.name] = {"unavailable": system.unavailable}
    if not capable:
        return {"rows": rows, "examples": []}
    phrases = expansion.PhraseSet.cached(
        context.train.prompts, context.train.sha256, context.cache_root
    )
    examples: list[dict[str, Any]] = [{"idea": idea, "candidates": {}} for idea in ideas[:EXAMPLES]]
    for system in capable:
        began = _clock()
        _log(f"expansion {system.name} on {len(ideas)} ideas")
        produced: list[tuple[str, list[str]]] = []
        row = _guarded(
            f"expansion {system.name}",
            lambda s=system, out=produced: _expand_all(s, ideas, phrases, out),
        )
        rows[system.name] = _stamp(row, meta, began, system)
        for example, (_, candidates) in zip(examples, produced, strict=False):
            example["candidates"][system.name] = candidates
    return {"rows": rows, "examples": examples}


def _expand_all(
    system: Benchmarked,
    ideas: Sequence[str],
    phrases: expansion.PhraseSet,
    produced: list[tuple[str, list[str]]],
) -> dict[str, Any]:
    """Expand every idea (appending to ``produced``), timing each call; the scores row."""
    assert system.expand is not None
    latencies: list[float] = []
    for idea in ideas:
        start = time.perf_counter()
        candidates = system.expand(idea, EXPANSIONS_PER_IDEA)
        latencies.append(time.perf_counter() - start)
        produced.append((idea, candidates))
    row: dict[str, Any] = {
        k: round(v, 4) if isinstance(v, float) else v
        for k, v in asdict(expansion.score(produced, phrases)).items()
    }
    row["latency_ms"] = _ms(latencies)
    return row


COLD_STARTS = 5  # spawns timed for the cold-start rows; one spawn varied by 0.5 s run to run


def _load() -> float:
    """The 1-minute load average: on a shared machine it says what a timing competed with."""
    return round(os.getloadavg()[0], 2)


async def cold_start(command: Sequence[str], cold_text: str) -> tuple[float, float]:
    """(spawn -> initialize reply, spawn -> first non-empty completion) of a fresh server."""
    driver = LspDriver(command, log_path=_server_log())
    try:
        initialize = await driver.start()
        return initialize, await driver.first_completion_seconds(cold_text)
    finally:
        await driver.stop()


async def measure_server(
    command: Sequence[str],
    prompts: Sequence[str],
    cold_text: str = COLD_START_TEXT,
    cold_starts: int = COLD_STARTS,
) -> dict[str, Any]:
    """Cold starts (medians of several spawns), then every prefix of every prompt typed into
    one more server, from its first completion on; the typed texts come back too.

    Typing starts while the model still loads (the statistics serve): each keystroke's
    latencies also count as "loading" or "ready", by whether the server's loading progress
    has ended. The load average is taken before each spawn and around the typing.
    """
    starts: list[tuple[float, float]] = []
    loads: list[float] = []
    for _ in range(cold_starts - 1):
        loads.append(_load())
        starts.append(await cold_start(command, cold_text))
    loads.append(_load())
    driver = LspDriver(command, log_path=_server_log())
    try:
        initialize = await driver.start()
        starts.append((initialize, await driver.first_completion_seconds(cold_text)))
        driver.latencies = {"completion": [], "inline": []}
        phases: dict[str, dict[str, list[float]]] = {
            phase: {"completion": [], "inline": []} for phase in ("loading", "ready")
        }
        typed: list[str] = []
        typing_load = [_load()]
        for prompt in prompts:
            for end in range(1, len(prompt) + 1):
                typed.append(prompt[:end])
                phase = phases["loading" if driver.client.loading else "ready"]
                await driver.keystroke(prompt[:end])
                for kind, values in driver.latencies.items():
                    phase[kind].append(values[-1])
        typing_load.append(_load())
        return {
            "initialize_s": round(statistics.median(i for i, _ in starts), 3),
            "first_completion_s": round(statistics.median(f for _, f in starts), 3),
            "cold_starts_s": [[round(i, 3), round(f, 3)] for i, f in starts],
            "cold_start_load_average": loads,
            "latency_ms": {kind: _ms(v) for kind, v in driver.latencies.items()},
            "requests": {kind: len(v) for kind, v in driver.latencies.items()},
            "latency_by_phase_ms": {
                phase: {kind: _ms(v) for kind, v in found.items() if v}
                for phase, found in phases.items()
                if found["completion"]
            },
            "requests_by_phase": {
                phase: len(found["completion"]) for phase, found in phases.items()
            },
            "typing_load_average": typing_load,
            "peak_rss_mb": round(driver.peak_rss_bytes() / 2**20, 1),
            "resident_at_end_mb": driver.resident_mb(),
            "prompts": len(prompts),
            "typed": typed,
        }
    finally:
        await driver.stop()


def pipeline_latencies(
    model_dir: Path, prefixes: Sequence[str], threads: int | None, max_new_tokens: int = 8
) -> list[float]:
    """The naive way: transformers.pipeline("text-generation") asked for the next phrase."""
    import torch
    from transformers import pipeline

    if threads:
        torch.set_num_threads(threads)
    generator = pipeline(
        "text-generation", model=str(model_dir), tokenizer=str(model_dir), device="cpu"
    )
    pad = generator.tokenizer.eos_token_id
    latencies = []
    for prefix in prefixes:
        began = time.perf_counter()
        generator(
            prefix,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            return_full_text=False,
            pad_token_id=pad,
        )
        latencies.append(time.perf_counter() - began)
    return latencies


# What a server process must import before it can answer, timed alone: the floors under the
# cold-start targets that no change inside prompt-ls can go below.
IMPORT_FLOORS = {
    "python itself": "pass",
    "pygls + lsprotocol (initialize)": "import pygls.lsp.server, lsprotocol.types",
    "numpy (statistics and model)": "import numpy",
    "torch (not imported by the server; the issue's yardstick)": "import torch",
}


def import_floors(repeats: int = 3) -> dict[str, float]:
    """Spawn to the end of each import alone (fastest of ``repeats``), in s.

    The child reports when its import is done; its exit, which tears the modules down
    again, is not counted.
    """
    floors: dict[str, float] = {}
    for name, code in IMPORT_FLOORS.items():
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            with subprocess.Popen(
                [sys.executable, "-c", f"{code}; print(flush=True)"], stdout=subprocess.PIPE
            ) as child:
                assert child.stdout is not None
                child.stdout.readline()
                times.append(time.perf_counter() - began)
            if child.returncode:
                raise RuntimeError(f"{code!r} failed with exit code {child.returncode}")
        floors[name] = round(min(times), 3)
    return floors


def run_server(
    sizes: Sizes, directory: Path, command: Sequence[str], threads: int | None, meta: dict[str, Any]
) -> dict[str, Any]:
    began = _clock()
    prompts = data.ksr_sample(data.dev_lines(directory), data.KSR_SAMPLE_SIZE)
    prompts = prompts[: sizes.latency_prompts]
    compile_bytecode()
    # What no change inside prompt-ls can go below, timed next to the cold starts.
    floors_load = _load()
    floors = import_floors()
    _log(f"server latency: typing {len(prompts)} prompts through {shlex.join(command)}")
    try:
        result = asyncio.run(measure_server(command, prompts))
    except ServerUnavailable as exc:
        return _stamp({"unavailable": str(exc)}, meta, began)
    result["import_floors_s"] = floors
    result["import_floors_load_average"] = floors_load
    result["bytecode"] = "compiled before timing, as pip install does"
    typed = [t for t in result.pop("typed") if t.strip()]
    step = max(1, len(typed) // max(1, sizes.pipeline_calls))
    chosen = typed[::step][: sizes.pipeline_calls]
    _log(f"pipeline baseline on {len(chosen)} typed prefixes")
    default_model = resolve_model("default")
    result["pipeline_ms"] = _ms(pipeline_latencies(default_model, chosen, threads))
    result["pipeline_calls"] = len(chosen)
    result["model"] = model_identity(default_model)  # what the server loads by default
    # The pack on a fresh install, or the full statistics when this store has them.
    result["statistics"] = ModelStore().statistics_label(default_model)
    return _stamp(result, meta, began)


def compile_bytecode() -> None:
    """Compile this checkout's packages to bytecode, as ``pip install`` does for an installed
    copy: where PYTHONDONTWRITEBYTECODE is set (these machines set it), every spawn of a
    source checkout would otherwise compile every module again, about 0.25 s of CPU."""
    for package in ("server", "model_store", "client_tui"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)


# ------------------------------------------------------------------------------ main
def run_scale(
    context: Context, corpora: str, meta: dict[str, Any], earlier: dict[str, Any] | None
) -> dict[str, Any]:
    """Time and peak memory of counting the training corpus in memory (as before) and in
    shards over ``SCALE_WORKERS`` processes, whose arrays must be identical; then of a synthetic
    corpus ``SCALE_FACTOR`` times its size, in shards (in memory it would not fit)."""
    from benchmarks import counting_scale
    from model_store.ngram import sharded

    rows = dict((earlier or {}).get("rows", {}))
    sharding = ["--workers", str(SCALE_WORKERS), "--shard-prompts", str(sharded.SHARD_PROMPTS)]
    with tempfile.TemporaryDirectory(prefix="counting-scale-") as folder:
        work = Path(folder)
        prompts = context.train.prompts
        real, synthetic = work / "real.txt", work / "synthetic.txt"
        if "real" in corpora.split(","):
            counting_scale.write_lines(iter(prompts), real)
        if "synthetic" in corpora.split(","):
            _log(f"generating a synthetic corpus {SCALE_FACTOR}x the training corpus")
            counting_scale.write_lines(
                counting_scale.synthetic_prompts(prompts, SCALE_FACTOR), synthetic
            )
        del prompts
        runs = [
            ("real", "memory", real, [], "in memory (counting.count)"),
            ("real", "sharded", real, sharding, f"sharded, {SCALE_WORKERS} workers"),
            ("synthetic", "sharded", synthetic, sharding, f"sharded, {SCALE_WORKERS} workers"),
        ]
        for corpus, method, path, extra, how in runs:
            if not path.is_file():
                continue
            _log(f"counting the {corpus} corpus {how}")
            began = _clock()
            arguments = [str(path), "--method", method, "--scratch", str(work), *extra]
            row = counting_scale.measure(arguments, work / "digest.json")
            row.update(corpus=corpus, method=how, prompts=sum(1 for _ in path.open("rb")))
            _stamp(row, meta, began)
            rows[f"{corpus} {method}"] = row
    memory, shards = rows.get("real memory"), rows.get("real sharded")
    identical = None
    if memory and shards:
        identical = memory["digest"] == shards["digest"]
    return {"workers": SCALE_WORKERS, "factor": SCALE_FACTOR, "identical": identical, "rows": rows}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--data",
        help="prompts directory with dev.txt and train.txt.gz "
        "(default: $PROMPT_AUTOCOMPLETE_DATA, else ../shared/data/prompts)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="report path (default docs/BENCHMARKS.md; "
        "with --quick build/benchmarks-quick/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}; on request: {','.join(ON_REQUEST)}",
    )
    parser.add_argument(
        "--scale-corpora",
        default="real,synthetic",
        help="the scale section's corpora: real (in memory and sharded, compared), "
        f"synthetic ({SCALE_FACTOR}x, sharded)",
    )
    parser.add_argument(
        "--systems",
        default=DEFAULT_SYSTEMS,
        help="comma-separated: none, prefix, ngram[:ORDER], engine[:MODEL], blend[:MODEL], "
        "study-lstm[:MODEL], study-mlm[:MODEL], lsp, lsp:fresh (empty store, no corpus)",
    )
    parser.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="more models for the engine rows (directories or store refs)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--sample", type=int, help="KSR prompts for fast systems (300)")
    parser.add_argument("--model-sample", type=int, help="KSR prompts for engine rows (100)")
    parser.add_argument("--lsp-sample", type=int, help="KSR prompts through the server (20)")
    parser.add_argument(
        "--perplexity-prompts", type=int, help="dev prompts for perplexity (2000; 0 = all 18,967)"
    )
    parser.add_argument("--ideas", type=int, help="expansion ideas (200)")
    parser.add_argument("--latency-prompts", type=int, help="prompts typed for latency (20)")
    parser.add_argument("--pipeline-calls", type=int, help="naive pipeline calls (200)")
    parser.add_argument(
        "--tune-prompts", type=int, help="dev prompts outside the KSR sample per blend weight (40)"
    )
    parser.add_argument(
        "--pack-sample", type=int, help="KSR prompts per statistics size in the pack curve (100)"
    )
    parser.add_argument(
        "--vocabulary-sample", type=int, help="prompts per tag-pack KSR through prompt-ls (100)"
    )
    parser.add_argument(
        "--vocabulary-rows",
        default="",
        help=f"comma-separated subset of {','.join(vocabulary.ROWS)} (default: all)",
    )
    parser.add_argument("--threads", type=int, help="torch threads for the models")
    parser.add_argument(
        "--server-command",
        default=shlex.join(default_server_command()),
        help="how to start prompt-ls (default: as the REPL starts it)",
    )
    parser.add_argument("--fresh", action="store_true", help="discard earlier results")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else Sizes()
    overrides = {
        name: value
        for name, value in (
            ("sample", args.sample),
            ("model_sample", args.model_sample),
            ("lsp_sample", args.lsp_sample),
            ("perplexity_prompts", args.perplexity_prompts),
            ("ideas", args.ideas),
            ("latency_prompts", args.latency_prompts),
            ("pipeline_calls", args.pipeline_calls),
            ("tune_prompts", args.tune_prompts),
            ("pack_sample", args.pack_sample),
            ("vocabulary_sample", args.vocabulary_sample),
        )
        if value is not None
    }
    for name, value in overrides.items():
        if value < 0 or (value == 0 and name != "perplexity_prompts"):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive")
    return Sizes(**{**asdict(base), **overrides})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS) - set(ON_REQUEST))
    if unknown:
        choices = ", ".join((*SECTIONS, *ON_REQUEST))
        raise SystemExit(f"unknown sections {unknown}; choose from {choices}")
    specs = [s.strip() for s in args.systems.split(",") if s.strip()]
    specs += [f"engine:{m}" for m in args.models]
    try:
        for spec in specs:
            parse_spec(spec)
        directory = data.data_dir(args.data)
    except (ValueError, data.DataError) as exc:
        raise SystemExit(str(exc)) from exc
    default_output = "build/benchmarks-quick/BENCHMARKS.md" if args.quick else "docs/BENCHMARKS.md"
    output = args.output or data.REPO_ROOT / default_output
    results_path = report.results_path(output)
    results: dict[str, Any] = {}
    if results_path.is_file() and not args.fresh:
        results = json.loads(results_path.read_text(encoding="utf-8"))

    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta = run_metadata(command.strip())
    server_command = shlex.split(args.server_command)
    context = Context(directory, threads=args.threads)
    serves = any(parse_spec(spec)[0] == "lsp" for spec in specs)
    runner = LoopThread() if serves and "ksr" in sections else None
    began = _clock()
    systems: list[Benchmarked] = []
    try:
        for spec in specs:
            if parse_spec(spec)[0] == "lsp" and "ksr" not in sections:
                continue
            _log(f"preparing {spec}")
            systems.append(_build(context, spec, runner, server_command))
        if "ksr" in sections:
            results.setdefault("ksr", {}).update(run_ksr(systems, sizes, directory, meta))
        if "blend" in sections:
            results["blend"] = run_blend(context, sizes, meta)
        if "pack" in sections:
            results["pack"] = run_pack(context, sizes, meta)
        for system in [s for s in systems if isinstance(s.system, LspSystem)]:
            system.close()  # only KSR uses it: free the server before timing anything else
            systems.remove(system)
        if "perplexity" in sections:
            results.setdefault("perplexity", {}).update(
                run_perplexity(systems, sizes, directory, meta)
            )
        if "expansion" in sections:
            found = run_expansion(systems, sizes, context, meta)
            merged = results.setdefault("expansion", {"rows": {}, "examples": []})
            merged["rows"].update(found["rows"])
            if found["examples"]:
                merged["examples"] = _merge_examples(merged["examples"], found["examples"])
        if "server" in sections:
            results["server"] = run_server(sizes, directory, server_command, args.threads, meta)
        if "vocabulary" in sections:
            rows = [r.strip() for r in args.vocabulary_rows.split(",") if r.strip()]
            found = vocabulary.run(
                directory,
                server_command,
                sizes.vocabulary_sample,
                _log,
                lambda row, began: _stamp(row, meta, began),
                rows,
            )
            results.setdefault("vocabulary", {}).update(found)
        if "scale" in sections:
            results["scale"] = run_scale(context, args.scale_corpora, meta, results.get("scale"))
        if "personal" in sections:
            began_personal = _clock()
            results["personal"] = personal.run(
                directory,
                server_command,
                _server_log(),
                lambda row: _stamp(row, meta, began_personal),
                sizes.model_sample,
                sizes.lsp_sample,
                sizes.tune_prompts,
            )
    finally:
        for system in systems:
            system.close()
        if runner is not None:
            runner.close()
    results["last_run"] = {**meta, **_elapsed(began), "sizes": asdict(sizes)}
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(
        json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    report.write(results, output)
    _log(f"wrote {output} and {results_path} in {results['last_run']['seconds']} s")
    return 0


def _merge_examples(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep other systems' candidates for the same ideas; start over if the ideas changed."""
    if [e["idea"] for e in old] != [e["idea"] for e in new]:
        return new
    for before, after in zip(old, new, strict=True):
        before["candidates"].update(after["candidates"])
    return old


if __name__ == "__main__":
    sys.exit(main())
