"""Today's prompt vocabulary, measured: tag packs on modern and 2022-style prompts (KSR through
``prompt-ls``), CLIP token counts against OpenAI's tokenizer, and a keystroke's cost with
10,000 LoRA files in ``loraDirs``.

``modern/modern_dev.txt`` is evaluation data only: prompts are sampled from it here and nothing
counted from it is kept beyond the figures.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import data
from benchmarks.ksr import MemoSystem, evaluate
from benchmarks.lsp_driver import LoopThread, LspDriver, LspSystem
from benchmarks.stats import percentiles

MODERN_DEV = Path("modern") / "modern_dev.txt"
TOKEN_PROMPTS = 500  # from each of dev and modern dev: 1,000 in all
LORA_FILES = 10_000
COST_PROMPTS = 5  # dev prompts typed key by key for the keystroke cost
WARM_TEXT = "a portrait of a wo"
PACKS = {"on": ["danbooru"], "off": []}
CORPORA = ("modern", "dev")


def _ksr_row(corpus: str, packs: str) -> str:
    return f"ksr_{corpus}_tags_{packs}"


ROWS = ("tokens", *(_ksr_row(c, p) for c in CORPORA for p in PACKS), "lora_cost")


def modern_lines(directory: Path) -> list[str]:
    """Non-empty lines of modern_dev.txt beside the prompts directory (evaluation only)."""
    path = directory.parent / MODERN_DEV
    if not path.is_file():
        raise data.DataError(f"{path}: modern dev prompts missing")
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def modern_sample(directory: Path, size: int) -> list[str]:
    return random.Random(data.SEED).sample(modern_lines(directory), size)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {k: round(v * 1000, 2) for k, v in percentiles(values).items()}


class _Server:
    """One prompt-ls with the given settings, warmed up until it completes."""

    def __init__(self, runner: LoopThread, command: Sequence[str], options: dict[str, Any]):
        self.runner = runner
        self.driver = LspDriver(command, settings=options)

    def __enter__(self) -> LspDriver:
        self.runner.run(self.driver.start(), timeout=180)
        self.runner.run(self.driver.wait_until_serving(), timeout=300)
        self.runner.run(self.driver.first_completion_seconds(WARM_TEXT), timeout=300)
        self.driver.latencies = {"completion": [], "inline": []}
        return self.driver

    def __exit__(self, *exc: object) -> None:
        self.runner.run(self.driver.stop(), timeout=60)


def lsp_ksr(
    runner: LoopThread,
    command: Sequence[str],
    options: dict[str, Any],
    targets: Sequence[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """KSR (ghost + menu, and ghost only) of ``targets`` typed through one server."""
    with _Server(runner, command, options) as driver:
        statistics = runner.run(driver.client.status(), timeout=60).get("statistics")
        memo = MemoSystem(LspSystem(driver, runner, "prompt-ls"))
        began = time.perf_counter()
        full = evaluate(memo, targets, use_menu=True)
        ghost_only = evaluate(memo, targets, use_menu=False)
        log(f"  KSR {full.ksr:.4f} in {time.perf_counter() - began:.0f} s")
        return {
            "prompts": len(targets),
            "statistics": statistics,  # "pack" (a fresh install) or "full" (prompt-models stats)
            "ksr": round(full.ksr, 4),
            "ksr_ghost_only": round(ghost_only.ksr, 4),
            "menu_acceptances": full.acceptances["menu"],
            "latency_ms": {kind: _ms(v) for kind, v in driver.latencies.items() if v},
        }


def reference_encoder() -> Callable[[str], list[int]] | None:
    """OpenAI's ``simple_tokenizer`` from clip-anytorch, if installed (a test dependency)."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "simple_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer().encode


def token_agreement(directory: Path) -> dict[str, Any]:
    """Our CLIP tokens against the reference on the first 500 dev and 500 modern dev prompts."""
    from server.engine import clip_tokens

    reference = reference_encoder()
    if reference is None:
        return {"unavailable": "clip-anytorch is not installed (pip install --no-deps)"}
    prompts = data.dev_lines(directory)[:TOKEN_PROMPTS] + modern_lines(directory)[:TOKEN_PROMPTS]
    equal = sum(clip_tokens.encode(prompt) == reference(prompt) for prompt in prompts)
    clip_tokens.budgets.cache_clear()
    seconds = []
    for prompt in prompts:
        began = time.perf_counter()
        clip_tokens.budget(prompt)
        seconds.append(time.perf_counter() - began)
    return {"prompts": len(prompts), "equal": equal, "budget_ms": _ms(seconds)}


def _lora_folder(root: Path) -> Path:
    folder = root / "loras"
    folder.mkdir()
    for number in range(LORA_FILES):
        (folder / f"style_{number:05d}.safetensors").write_bytes(b"")
    return folder


def _typed(driver: LspDriver, runner: LoopThread, prompts: Sequence[str]) -> None:
    for prompt in prompts:
        for end in range(1, len(prompt) + 1):
            runner.run(driver.keystroke(prompt[:end]), timeout=60)


def lora_cost(
    runner: LoopThread, command: Sequence[str], directory: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Completion latency typing dev prompts with and without 10,000 LoRAs, and in-process
    the scan itself and what a request pays to look at the last scan."""
    from server.engine.user_models import UserModels, scan

    prompts = data.ksr_sample(data.dev_lines(directory))[:COST_PROMPTS]
    lora_names = ["<lora:", "<lora:style_01", "<lora:style_0999"]
    row: dict[str, Any] = {"lora_files": LORA_FILES, "prompts": len(prompts)}
    with tempfile.TemporaryDirectory() as temporary:
        folder = _lora_folder(Path(temporary))
        began = time.perf_counter()
        found = scan([str(folder)], [], [])
        row["scan_s"] = round(time.perf_counter() - began, 3)
        assert len(found.loras.files) == LORA_FILES
        models = UserModels()
        models.configure((str(folder),), (), ())
        models.wait(60)
        looks = []
        for _ in range(2000):
            began = time.perf_counter()
            models.found  # noqa: B018 - the cost of reading the last scan is what is measured
            looks.append(time.perf_counter() - began)
        row["lookup_us_p50"] = round(statistics.median(looks) * 1e6, 2)
        for label, options in (("without", {}), ("with", {"loraDirs": [str(folder)]})):
            log(f"  typing {len(prompts)} prompts {label} {LORA_FILES} LoRAs")
            with _Server(runner, command, options) as driver:
                _typed(driver, runner, prompts)
                row[f"completion_ms_{label}"] = _ms(driver.latencies["completion"])
                if label == "with":
                    driver.latencies["completion"] = []
                    for text in lora_names * 10:
                        runner.run(driver.completion(text), timeout=60)
                    row["lora_name_completion_ms"] = _ms(driver.latencies["completion"])
    return row


def run(
    directory: Path,
    command: Sequence[str],
    sample: int,
    log: Callable[[str], None],
    stamp: Callable[[dict[str, Any], tuple[float, float]], dict[str, Any]],
    only: Sequence[str] = (),
) -> dict[str, Any]:
    """The section's rows (``only`` those named, as in ``ROWS``); ``stamp`` adds the command,
    date, commit and time since a clock."""
    unknown = sorted(set(only) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown vocabulary rows {unknown}; rows: {', '.join(ROWS)}")
    wanted = set(only or ROWS)
    runner = LoopThread()
    rows: dict[str, Any] = {}
    try:
        if "tokens" in wanted:
            log("CLIP token agreement")
            began = _clock()
            rows["tokens"] = stamp(token_agreement(directory), began)
        targets = {
            "modern": modern_sample(directory, sample),
            "dev": data.ksr_sample(data.dev_lines(directory))[:sample],
        }
        for corpus, prompts in targets.items():
            for packs, names in PACKS.items():
                if _ksr_row(corpus, packs) not in wanted:
                    continue
                log(f"KSR through prompt-ls on {len(prompts)} {corpus} prompts, tags {packs}")
                began = _clock()
                row = lsp_ksr(runner, command, {"tagPacks": names}, prompts, log)
                rows[_ksr_row(corpus, packs)] = stamp(row, began)
        if "lora_cost" in wanted:
            log(f"keystroke cost with {LORA_FILES} LoRA files")
            began = _clock()
            rows["lora_cost"] = stamp(lora_cost(runner, command, directory, log), began)
    finally:
        runner.close()
    return rows
