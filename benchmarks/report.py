"""Render results.json into docs/BENCHMARKS.md and its PNG charts (matplotlib, Agg).

``python -m benchmarks.report [--output docs/BENCHMARKS.md]`` re-renders without measuring
anything, e.g. after merging branches that each added rows to results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.data import REPO_ROOT

# Figures measured for the project before this suite existed, on the same 300-prompt sample:
# the suite's simulator is checked against them (they are expectations, not results).
# Rows are found by their system's --systems spec, never by their display name.
REFERENCE_KSR = {"ngram": (0.616, 0.591), "prefix": (0.061, None)}

# (label, where in the results, comparison, target)
TARGETS: list[tuple[str, str, str, float]] = [
    ("completion p50 (ms)", "completion.p50", "<=", 15),
    ("completion p99 (ms)", "completion.p99", "<=", 50),
    ("inline completion p50 (ms)", "inline.p50", "<=", 40),
    ("inline completion p99 (ms)", "inline.p99", "<=", 120),
    ("4 expansions, median (ms)", "expand.p50", "<=", 400),
    ("spawn -> initialize reply (s)", "initialize_s", "<=", 0.5),
    ("spawn -> first non-empty completion (s)", "first_completion_s", "<=", 1.5),
    ("peak RSS of the server (MB)", "peak_rss_mb", "<=", 400),
    ("pipeline p50 / server inline p50 (x faster)", "speedup", ">=", 3),
    ("KSR gain over the word trigram, ghost+menu", "ksr.gain", ">", 0),
    ("KSR gain over the word trigram, ghost only", "ksr.gain_ghost", ">", 0),
    ("KSR ghost+menu", "ksr.full", ">=", 0.70),
    ("KSR ghost only", "ksr.ghost", ">=", 0.70),
    ("fresh install KSR ghost+menu (prompt-ls, empty store)", "ksr.fresh", ">=", 0.70),
    ("fresh install KSR ghost only (prompt-ls, empty store)", "ksr.fresh_ghost", ">=", 0.65),
    ("fresh install peak RSS of the server, the pack mapped (MB)", "fresh_rss_mb", "<=", 400),
]
PRODUCT_SYSTEM = "blend"  # what prompt-ls serves once the corpus statistics are built
TRIGRAM_SYSTEM = "ngram"
FRESH_SYSTEM = "lsp:fresh"  # prompt-ls with an empty store and no corpus
KSR_AND_LATENCY = ["KSR ghost+menu", "KSR ghost only", "p50 ms", "p95 ms", "p99 ms"]
NOTES = "benchmarks-notes.md"  # the hand-written account of what helped, citing these tables


def row_of(rows: dict[str, Any], spec: str) -> dict[str, Any]:
    """The row measured for the system ``spec`` (empty if none was)."""
    return next((row for row in rows.values() if row.get("system") == spec), {})


def results_path(output: Path) -> Path:
    """Where the results behind the report at ``output`` are kept."""
    return output.parent / "benchmarks" / "results.json"


def write(results: dict[str, Any], output: Path) -> None:
    assets = output.parent / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results, assets, output.parent), encoding="utf-8")


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _commands(rows: Iterable[dict[str, Any]]) -> str:
    seen: list[str] = []
    for row in rows:
        command = row.get("command")
        if command and command not in seen:
            seen.append(command)
    return "\n".join(f"    PYTHONPATH=. {c}" for c in seen) or "    (not run yet)"


def _latency(row: dict[str, Any] | None) -> list[Any]:
    values = row or {}
    return [values.get("p50"), values.get("p95"), values.get("p99")]


def common_subset(rows: dict[str, dict[str, Any]]) -> tuple[int, dict[str, tuple[float, float]]]:
    """KSR of every measured row on the first N prompts, N = the smallest sample measured."""
    measured = {name: row for name, row in rows.items() if row.get("per_prompt")}
    if not measured:
        return 0, {}
    size = min(len(row["per_prompt"]) for row in measured.values())
    subset = {}
    for name, row in measured.items():
        head = row["per_prompt"][:size]
        chars = sum(p[0] for p in head)
        subset[name] = (1 - sum(p[1] for p in head) / chars, 1 - sum(p[2] for p in head) / chars)
    return size, subset


def _chart(path: Path, draw: Callable[[Any], None]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.2), dpi=110)
    draw(axes)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _bars(
    axes: Any, names: list[str], series: dict[str, list[float]], ylabel: str, legend: bool = False
) -> None:
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        positions = [x + (i - (len(series) - 1) / 2) * width for x in range(len(names))]
        bars = axes.bar(positions, values, width, label=label)
        axes.bar_label(bars, fmt="%.3g", fontsize=7)
    axes.set_xticks(range(len(names)), names, rotation=15, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    if legend or len(series) > 1:
        axes.legend(fontsize=8)


def render(results: dict[str, Any], assets: Path, root: Path) -> str:
    run = results.get("last_run", {})
    sizes = run.get("sizes", {})
    rel = assets.relative_to(root)
    parts = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.run` from `results.json`; do not edit by hand "
        "(every number below comes from a run). Last run: "
        f"{run.get('date', '?')}, commit `{run.get('commit', '?')}`, "
        f"{run.get('cpus', '?')} CPUs ({run.get('cpu_model', '?')}), load average at start "
        f"{run.get('load_average', '?')}, {run.get('seconds', '?')} s wall, "
        f"{run.get('cpu_seconds', '?')} s CPU in the benchmark process. Rows from earlier runs "
        "keep their own command and commit (listed under each table).",
        "",
        "## Reproducing",
        "",
        "From the repository root, with the shared corpus at `../shared/data/prompts` (or "
        "`--data DIR` / `$PROMPT_AUTOCOMPLETE_DATA`):",
        "",
        "    PYTHONPATH=. python -m benchmarks.run    # all but the MLM (wall time: see above)",
        "    PYTHONPATH=. python -m benchmarks.run --systems study-mlm --model-sample 30",
        "    PYTHONPATH=. python -m benchmarks.run --quick    # smoke run into build/",
        "    PYTHONPATH=. python -m benchmarks.run --sections ksr --systems ngram,prefix",
        "    PYTHONPATH=. python -m benchmarks.run --systems engine --models path/to/model",
        "    PYTHONPATH=. python -m benchmarks.report    # re-render results.json, no measuring",
        "",
        "Sizes of the last run: " + ", ".join(f"{k} = {v}" for k, v in sizes.items()) + ". "
        "KSR targets are `random.Random(1234).sample(dev_lines, 300)` (dev lines: non-empty "
        "lines of dev.txt as written); smaller KSR samples are its first N prompts, so every "
        "row can be compared on the common prefix. Model-backed rows use fewer prompts to fit "
        "the time budget. Perplexity uses dev prompts cleaned by `model_store.corpus` (all of "
        "them, or a seeded sample when `perplexity_prompts` > 0). Expansion ideas are the "
        "first 2-4 words (seeded) of dev prompts of at least 5 words. The n-gram's statistics "
        "are built once from train.txt.gz into the model store (`model_store.ngram`, "
        "the same files `prompt-models stats` writes and `prompt-ls` blends in); the "
        "training phrase set is cached under the user cache directory "
        "(`$PROMPT_AUTOCOMPLETE_CACHE`/benchmarks).",
        "",
    ]
    models = sorted(
        {
            (name, row["model"])
            for section in ("ksr", "perplexity")
            for name, row in results.get(section, {}).items()
            if row.get("model")
        }
    )
    if models:
        parts += ["Models measured: " + "; ".join(f"{n} = {m}" for n, m in models) + ".", ""]
    parts += _ksr_section(results.get("ksr", {}), assets, rel)
    parts += _blend_section(results.get("blend"))
    parts += _pack_section(results.get("pack"), assets, rel)
    parts += _perplexity_section(results.get("perplexity", {}), assets, rel)
    parts += _expansion_section(results.get("expansion", {}), assets, rel)
    parts += _server_section(results, assets, rel)
    parts += _vocabulary_section(results.get("vocabulary"))
    parts += _scale_section(results.get("scale"))
    parts += _personal_section(results.get("personal"), assets, rel)
    return "\n".join(parts)


def _ksr_section(rows: dict[str, Any], assets: Path, rel: Path) -> list[str]:
    parts = [
        "## Keystroke savings (KSR)",
        "",
        "A simulated person types each target from an empty line. At every state the system "
        "shows ghost text and up to 5 menu items; typing a character costs 1, Tab (all of the "
        "ghost) 1, its first k words k (IPython's accept-word pieces), menu item j costs j. An "
        "option counts only if it yields a longer, case-sensitive prefix of the target; the "
        "person takes the option with the largest gain minus cost when positive, else types. "
        "KSR = 1 - keystrokes / characters over the sample. Ghost-only KSR ignores the menu. "
        "Latency is per state (all requests the system needs for ghost and menu). Rows "
        "through `prompt-ls` start typing once the server's status says its model is ready: "
        "each state's answer is kept for the rest of the run, so answers from the first "
        "second would stand for every later prompt that starts the same way (the first "
        "second is the cold start's, in the server section).",
        "",
    ]
    measured = {n: r for n, r in rows.items() if "ksr" in r}
    table = []
    for name, row in measured.items():
        table.append(
            [
                name,
                row["prompts"],
                row["ksr"],
                row["ksr_ghost_only"],
                row["acceptances"],
                row["chars_per_acceptance"],
                *_latency(row.get("latency_ms")),
                row.get("seconds"),
                row.get("cpu_seconds"),
            ]
        )
    parts += [
        _table(
            [
                "system",
                "prompts",
                "KSR ghost+menu",
                "KSR ghost only",
                "acceptances",
                "chars/acceptance",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "wall s",
                "CPU s",
            ],
            table,
        ),
        "",
    ]
    size, subset = common_subset(measured)
    if subset and any(r["prompts"] != size for r in measured.values()):
        parts += [
            f"On the common first {size} prompts:",
            "",
            _table(
                ["system", "KSR ghost+menu", "KSR ghost only"],
                [[n, round(a, 4), round(b, 4)] for n, (a, b) in subset.items()],
            ),
            "",
        ]
    kinds = [
        [
            n,
            r["acceptances_by_kind"].get("ghost"),
            r["acceptances_by_kind"].get("ghost-words"),
            r["acceptances_by_kind"].get("menu"),
        ]
        for n, r in measured.items()
    ]
    if kinds:
        parts += [
            "Acceptances by kind (ghost+menu run):",
            "",
            _table(["system", "Tab (whole ghost)", "ghost word by word", "menu"], kinds),
            "",
        ]
    checks = [
        [
            name,
            REFERENCE_KSR[row["system"]][0],
            row["ksr"],
            REFERENCE_KSR[row["system"]][1],
            row["ksr_ghost_only"],
        ]
        for name, row in measured.items()
        if row.get("system") in REFERENCE_KSR and row["prompts"] == 300
    ]
    if checks:
        parts += [
            "Simulator check against the figures measured earlier on the same 300 prompts:",
            "",
            _table(
                ["system", "expected KSR", "measured", "expected ghost only", "measured"], checks
            ),
            "",
            "The prefix-history baseline cannot rank by frequency: the shared corpus is "
            "de-duplicated, so every prompt occurs once and the latest matching line wins "
            "(prompt-toolkit's rule). The oldest, shortest or alphabetically first line "
            "and the uncleaned training file all measured about the same or lower; the "
            "earlier figure presumably had request counts the corpus no longer carries.",
            "",
        ]
    by_kind = [
        [
            n,
            *_latency(r["latency_by_kind_ms"].get("inline")),
            *_latency(r["latency_by_kind_ms"].get("completion")),
        ]
        for n, r in measured.items()
        if r.get("latency_by_kind_ms")
    ]
    if by_kind:
        parts += [
            "In-process engine latency by call (ms):",
            "",
            _table(["system", "inline p50", "p95", "p99", "complete p50", "p95", "p99"], by_kind),
            "",
        ]
    parts += [
        f"What helped the keystroke savings, in the order it was tried, is told in [{NOTES}]"
        f"({NOTES}); the `{PRODUCT_SYSTEM}` row is what `prompt-ls` serves once "
        "`prompt-models stats` has built the statistics. The ablation below varies the LM's "
        "share.",
        "",
    ]
    unavailable = [f"- {n}: {r['unavailable']}" for n, r in rows.items() if "unavailable" in r]
    if unavailable:
        parts += ["Not measured in the last run that tried:", "", *unavailable, ""]
    if subset:
        names = list(subset)

        def draw(axes: Any) -> None:
            _bars(
                axes,
                names,
                {
                    "ghost + menu": [subset[n][0] for n in names],
                    "ghost only": [subset[n][1] for n in names],
                },
                "KSR",
            )
            axes.set_title(
                f"Keystroke savings, first {size} prompts of the 300-prompt sample", fontsize=10
            )

        _chart(assets / "ksr.png", draw)
        parts += [f"![KSR per system]({rel}/ksr.png)", ""]
    parts += ["Produced by:", "", _commands(rows.values()), ""]
    return parts


def _blend_section(found: dict[str, Any] | None) -> list[str]:
    if not found or not found.get("rows"):
        return []
    measured = [r for r in found["rows"] if "ksr" in r]
    product = (found["product_weight"], found.get("product_lm_letters"))

    def shown(row: dict[str, Any], value: Any) -> str:
        text = "any" if value is None else str(value)
        return f"**{text}**" if (row["weight"], row.get("lm_letters")) == product else text

    table = [
        [
            shown(r, r["weight"]),
            shown(r, r.get("lm_letters")),
            r["ksr"],
            r["ksr_ghost_only"],
            *_latency(r.get("latency_ms")),
        ]
        for r in measured
    ]
    return [
        "### Ablation: corpus statistics and the LM",
        "",
        "The engine ranks words and ghost text by (1 - w) P_ngram + w P_LM over the "
        "training corpus's likeliest words (`server/engine/blend.py`); menu phrases and "
        "expansions stay the LM's. w = 0 is the corpus statistics alone inside the engine, "
        "w = 1 the LM alone choosing among the corpus's candidate words; the `LM engine` row "
        "above is the LM with no statistics at all. Measured on "
        f"{found['prompts']} dev prompts outside the KSR sample (seeded), where the "
        f"product's weight (bold, {found['product_weight']}) was chosen; model "
        f"{found.get('model', '?')}. Once a few letters of a word are typed the corpus "
        "ranks the words that finish it alone (`LM until letter`; `any`: the LM rescores "
        "at every letter), which keeps most keystrokes off the LM.",
        "",
        _table(
            ["LM weight w", "LM until letter", *KSR_AND_LATENCY],
            table,
        ),
        "",
        "Produced by:",
        "",
        _commands(measured),
        "",
    ]


def _pack_section(found: dict[str, Any] | None, assets: Path, rel: Path) -> list[str]:
    if not found or not found.get("rows"):
        return []
    measured = [r for r in found["rows"] if "ksr" in r]
    shipped = found.get("shipped_threshold")

    def label(row: dict[str, Any]) -> str:
        if row["threshold"] is None:
            return "full statistics (`prompt-models stats`)"
        text = f"pack, pruned at {row['threshold']:g}"
        return f"**{text} (shipped)**" if row["threshold"] == shipped else text

    table = [
        [
            label(r),
            r["megabytes"],
            r.get("zipped_megabytes", ""),
            f"{r['ngrams']:,}",
            r["ksr"],
            r["ksr_ghost_only"],
            *_latency(r.get("latency_ms")),
        ]
        for r in measured
    ]
    parts = [
        "### The statistics pack: size against keystroke savings",
        "",
        "A fresh install has no corpus, so the package ships a pack of the statistics "
        "(`model_store/default_stats`, built by `prompt-models stats --pack`): n-grams whose "
        "removal changes the model least are pruned by relative entropy (Stolcke 1998; the "
        "threshold below), probabilities and backoff weights are 8-bit codes into a codebook "
        "per table, word ids the narrowest integer, all memory-mapped (`model_store/ngram`). "
        f"KSR of the default model's engine blended with each, on the first {found['prompts']} "
        f"prompts of the KSR sample; model {found.get('model', '?')}. Sizes are the files "
        "on disk and the same files deflated as in the wheel (what its 60 MB limit counts).",
        "",
        _table(
            ["statistics", "MB", "MB zipped", "n-grams", *KSR_AND_LATENCY],
            table,
        ),
        "",
    ]
    full = next((r for r in measured if r["threshold"] is None), None)
    chosen = next((r for r in measured if r["threshold"] == shipped), None)
    if full and chosen:
        parts += [
            f"The shipped pack saves {full['ksr'] - chosen['ksr']:.3f} fewer keystrokes than "
            f"the full statistics with ghost text and menu, "
            f"{full['ksr_ghost_only'] - chosen['ksr_ghost_only']:.3f} fewer with ghost text "
            "only (issue 13's goal: within 0.01). Relative-entropy pruning of a Kneser-Ney "
            "model costs more than its size suggests (Chelba et al. 2010 found the same): "
            "Kneser-Ney's lower orders are continuation counts, poor stand-ins for the "
            "n-grams pruned above them. Count cutoffs instead did no better per byte "
            "(docs/benchmarks-notes.md). The shipped threshold is the lowest whose pack keeps "
            "the wheel under its limit with room to spare.",
            "",
        ]
    if measured:

        def draw(axes: Any) -> None:
            sizes = [r.get("zipped_megabytes", r["megabytes"]) for r in measured]
            axes.plot(sizes, [r["ksr"] for r in measured], "o-", label="ghost + menu")
            axes.plot(sizes, [r["ksr_ghost_only"] for r in measured], "s-", label="ghost only")
            for row in measured:
                if row["threshold"] == shipped:
                    axes.axvline(
                        row.get("zipped_megabytes", row["megabytes"]),
                        color="grey",
                        linestyle=":",
                        label="shipped",
                    )
            axes.set_xscale("log")
            axes.set_xlabel("statistics deflated as in the wheel (MB, log scale)")
            axes.set_ylabel("KSR")
            axes.set_title(f"KSR against the size of the statistics ({found['prompts']} prompts)")
            axes.legend(fontsize=8)

        _chart(assets / "pack.png", draw)
        parts += [f"![pack size against KSR]({rel}/pack.png)", ""]
    parts += ["Produced by:", "", _commands(measured), ""]
    return parts


def _perplexity_section(rows: dict[str, Any], assets: Path, rel: Path) -> list[str]:
    parts = [
        "## Perplexity on dev",
        "",
        "Token perplexity is per model token (end of prompt included), so it differs in "
        "meaning between tokenizers; word perplexity, exp(total NLL / whitespace words), is the "
        "comparable one. Causal LMs use `model_store.evaluation.perplexity` (each prompt scored "
        "as EOS + prompt + EOS). The word n-grams are interpolated Kneser-Ney over "
        "whitespace words (orders 4 and 5 pruned to n-grams seen twice or more, "
        "`model_store/ngram/counting.py`); an unseen word gets the probability of one specific "
        "unseen type (the uniform floor, 1/(V+2) of the unigram discount mass), roughly "
        "what a subword model pays to spell it out. The study's word LSTM scores every "
        "out-of-vocabulary word as its `<unk>` class, which flatters it when the OOV rate is "
        "high. A masked LM "
        "has no left-to-right likelihood: its row gives the study's metric instead, exp(mean "
        "loss over 15% masked tokens) on one seeded draw of the masks, beside which the study "
        "reported 3.83 on a random split of 1k prompts with distilroberta's tokenizer (not the "
        "same measurement: `model_store.study.mlm.PERPLEXITY_NOTE`).",
        "",
    ]
    if not rows:
        return [*parts, "(not run yet)", ""]
    parts += [
        _table(
            [
                "system",
                "dev prompts",
                "tokens",
                "token perplexity",
                "words",
                "word perplexity",
                "OOV rate",
                "masked perplexity (15%)",
            ],
            [
                [
                    n,
                    int(r["prompts"]),
                    int(r["tokens"]),
                    r.get("token_perplexity"),
                    int(r["words"]) if "words" in r else None,
                    r.get("word_perplexity"),
                    r.get("oov_rate"),
                    r.get("masked_token_perplexity"),
                ]
                for n, r in rows.items()
            ],
        ),
        "",
    ]
    names = [n for n, r in rows.items() if r.get("word_perplexity")]
    if not names:  # e.g. only a masked LM measured: it has no word perplexity to chart
        return parts

    def draw(axes: Any) -> None:
        _bars(
            axes,
            names,
            {"word perplexity": [rows[n]["word_perplexity"] for n in names]},
            "word perplexity (log scale)",
        )
        axes.set_yscale("log")
        axes.set_title("Perplexity per whitespace word on dev (lower is better)", fontsize=10)

    _chart(assets / "perplexity.png", draw)
    return [
        *parts,
        f"![word perplexity]({rel}/perplexity.png)",
        "",
        "Produced by:",
        "",
        _commands(rows.values()),
        "",
    ]


def _expansion_section(found: dict[str, Any], assets: Path, rel: Path) -> list[str]:
    parts = [
        "## Expansion quality (short idea -> full prompt)",
        "",
        "Each system expands every idea into 4 candidates. *Idea kept*: share of the idea's "
        "words present in a candidate. *Distinct-2*: distinct word bigrams / all bigrams over "
        "one idea's candidates. *Repeated phrase*: share of candidates repeating a "
        "comma-phrase or a word trigram. *Prompt-likeness*: share of generated comma-phrases "
        "(lower-cased, stripped) that occur as a comma-phrase in the training corpus. "
        "*Unchanged*: candidates that add nothing. The n-gram baseline gives its greedy "
        "continuation and three top-20 samples.",
        "",
    ]
    rows = found.get("rows", {})
    measured = {n: r for n, r in rows.items() if "idea_kept" in r}
    if not measured:
        return [*parts, "(not run yet)", ""]
    parts += [
        _table(
            [
                "system",
                "ideas",
                "idea kept",
                "distinct-2",
                "repeated phrase",
                "prompt-likeness",
                "unchanged",
                "p50 ms",
                "p95 ms",
                "p99 ms",
            ],
            [
                [
                    n,
                    r["ideas"],
                    r["idea_kept"],
                    r["distinct_2"],
                    r["repeated_phrase"],
                    r["prompt_likeness"],
                    r["empty"],
                    *_latency(r.get("latency_ms")),
                ]
                for n, r in measured.items()
            ],
        ),
        "",
    ]
    unavailable = [f"- {n}: {r['unavailable']}" for n, r in rows.items() if "unavailable" in r]
    if unavailable:
        parts += ["Not measured:", "", *unavailable, ""]
    names = list(measured)
    metrics = ["idea_kept", "distinct_2", "repeated_phrase", "prompt_likeness"]

    def draw(axes: Any) -> None:
        _bars(
            axes,
            metrics,
            {n: [measured[n][m] for m in metrics] for n in names},
            "share",
            legend=True,
        )
        axes.set_title("Expansion quality (repeated phrase: lower is better)", fontsize=10)

    _chart(assets / "expansion.png", draw)
    parts += [f"![expansion quality]({rel}/expansion.png)", ""]
    examples = found.get("examples", [])
    if examples:
        systems = sorted({s for e in examples for s in e["candidates"]})
        parts += [
            "Examples (candidates separated by ⏎):",
            "",
            _table(
                ["idea", *systems],
                [
                    [
                        _cell(e["idea"]),
                        *[
                            " ⏎ ".join(_cell(c) for c in e["candidates"].get(s, []))
                            for s in systems
                        ],
                    ]
                    for e in examples
                ],
            ),
            "",
        ]
    return [*parts, "Produced by:", "", _commands(measured.values()), ""]


def _scale_section(found: dict[str, Any] | None) -> list[str]:
    if not found or not found.get("rows"):
        return []
    rows = list(found["rows"].values())
    table = [
        [
            f"{r['corpus']} ({r['prompts']:,} prompts)",
            r["method"],
            r["count_seconds"],
            r["count_cpu_seconds"],
            r["peak_tree_pss_mb"],
            r["largest_process_rss_mb"],
            ", ".join(f"{n:,}" for n in r["ngrams"]),
        ]
        for r in rows
    ]
    verdict = {True: "**identical**", False: "**different**", None: "not compared yet"}
    return [
        "## Counting the statistics at scale",
        "",
        "`prompt-models stats` counts the corpus in shards of prompts: each shard's sorted "
        "n-gram counts go to disk, then are merged by ranges of their first two words "
        "(`model_store/ngram/sharded.py`, as KenLM's `lmplz` sorts and merges), over "
        f"`--workers` processes ({found['workers']} here). Each row is one child process "
        "streaming the prompts from a text file; memory is the peak PSS of its whole process "
        "tree (workers included, shared pages once), sampled every 0.2 s, and the largest "
        "single process's peak RSS. The synthetic corpus is the training corpus plus "
        "recombinations of its comma-separated phrases, "
        f"{found['factor']}x its size, all distinct, generated into a temporary folder. "
        "Counting it in memory is not measured (it would need several times the real corpus's "
        "memory). What bounds memory: each worker holds one shard of "
        "`--shard-prompts` prompts (100,000) or one merge range of about 4M rows at a time; "
        "the main process holds the result, whose trigram table (every trigram is kept) grows "
        "with the corpus's distinct trigrams, not with its length. Arrays built by sharded "
        "and in-memory counting of the real corpus (every "
        f"count, key, discount and backoff, by sha256): {verdict[found.get('identical')]}.",
        "",
        _table(
            [
                "corpus",
                "counting",
                "wall s",
                "CPU s",
                "peak PSS MB (tree)",
                "largest RSS MB",
                "words; n-grams of orders 2-5",
            ],
            table,
        ),
        "",
        "Produced by:",
        "",
        _commands(rows),
        "",
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _server_section(results: dict[str, Any], assets: Path, rel: Path) -> list[str]:
    server = results.get("server", {})
    parts = [
        "## Language server: latency, cold start, memory",
        "",
        "The driver (`benchmarks/lsp_driver.py`, timing the REPL's own client "
        "`client_tui/lsp.py` over stdio) types each prompt "
        "character by character: a didChange, then completion and inline completion "
        "at the end of the line, one after the other, each timed from request to reply. "
        "Cold start: spawn to the initialize reply, and spawn to the first non-empty "
        "completion, each the median of several spawns (`cold_starts_s` in results.json "
        "keeps them all). Peak RSS is the server process's VmHWM. The naive baseline is the same "
        'default model through `transformers.pipeline("text-generation")` asked for the next '
        "phrase (8 new tokens, greedy) on a subsample of the same typed prefixes.",
        "",
        f"What brought completion under its budget is told in [{NOTES}]({NOTES}).",
        "",
    ]
    if "unavailable" in server:
        parts += [f"Not measured in the last run: {server['unavailable']}", ""]
    if server.get("model"):
        served = server.get("statistics")
        with_stats = f", served with the {served} corpus statistics" if served else ""
        parts += [f"Default model: {server['model']}{with_stats}.", ""]
    measured = "latency_ms" in server
    latency = server.get("latency_ms", {})
    if measured:
        parts += [
            _table(
                ["request", "count", "p50 ms", "p95 ms", "p99 ms"],
                [
                    [kind, server["requests"][kind], *_latency(values)]
                    for kind, values in latency.items()
                ]
                + [
                    [
                        "pipeline (naive)",
                        server.get("pipeline_calls"),
                        *_latency(server.get("pipeline_ms")),
                    ]
                ],
            ),
            "",
        ]
    phases = server.get("latency_by_phase_ms", {})
    if phases:
        parts += [
            "The same keystrokes by what served them: typing starts at the first completion, "
            "while the model still loads and the corpus statistics serve (`loading`), and "
            "goes on once its loading progress has ended (`ready`).",
            "",
            _table(
                ["phase", "keystrokes", "completion p50 / p99 ms", "inline p50 / p99 ms"],
                [
                    [
                        phase,
                        server.get("requests_by_phase", {}).get(phase),
                        *(_p50_p99(found.get(kind)) for kind in ("completion", "inline")),
                    ]
                    for phase, found in phases.items()
                ],
            ),
            "",
        ]
    if server.get("cold_starts_s"):
        loads = server.get("cold_start_load_average") or [None] * len(server["cold_starts_s"])
        typing = " -> ".join(map(str, server.get("typing_load_average", [])))
        parts += [
            "Cold starts, spawn to (initialize reply, first non-empty completion) in s, with "
            "the 1-minute load average before each spawn (2 cores, shared): "
            + "; ".join(
                f"({initialize}, {first}) at {load}"
                for (initialize, first), load in zip(server["cold_starts_s"], loads, strict=True)
            )
            + (f". Load average while typing: {typing}." if typing else "."),
            "",
        ]
    floors = server.get("import_floors_s")
    if floors:
        measured_at = server.get("import_floors_load_average")
        parts += [
            "Import floors (s), spawn to the end of each import done alone (fastest of 3"
            + (f", load average {measured_at}" if measured_at is not None else "")
            + "): "
            + ", ".join(f"{name} {value}" for name, value in floors.items())
            + ". The server answers `initialize` after the first two; it completes from the "
            "corpus statistics (numpy) while the model loads, and the model runs on numpy "
            "too, so the first completion can come sooner than `import torch` alone takes.",
            "",
        ]
    if server.get("bytecode"):
        parts += [f"Bytecode: {server['bytecode']}.", ""]
    resident = server.get("resident_at_end_mb")
    if resident:
        parts += [
            "Resident memory at the end of the run (MB): "
            + ", ".join(f"{kind} {value}" for kind, value in resident.items())
            + ". The file-backed part is mostly the memory-mapped word statistics: clean "
            "page-cache pages the kernel can drop and read back at will; the anonymous part "
            "is what the server alone holds (no torch: the model runs on numpy).",
            "",
        ]
    parts += [
        "Targets:",
        "",
        _table(["target", "goal", "measured", "met"], _target_rows(results)),
        "",
    ]
    if measured:
        kinds = list(latency)

        def draw(axes: Any) -> None:
            _bars(
                axes,
                kinds,
                {q: [latency[k].get(q, 0) for k in kinds] for q in ("p50", "p95", "p99")},
                "ms",
            )
            axes.set_title(
                f"prompt-ls latency while typing {server['prompts']} dev prompts", fontsize=10
            )

        _chart(assets / "latency.png", draw)
        parts += [f"![server latency]({rel}/latency.png)", ""]
    parts += ["Produced by:", "", _commands([server]), ""]
    return parts


def _p50_p99(numbers: dict[str, float] | None) -> str:
    return f"{numbers['p50']} / {numbers['p99']}" if numbers else "-"


def _target_rows(results: dict[str, Any]) -> list[list[Any]]:
    server = results.get("server", {})
    values: dict[str, float] = {}
    for kind, numbers in server.get("latency_ms", {}).items():
        for q, v in numbers.items():
            values[f"{kind}.{q}"] = v
    for key in ("initialize_s", "first_completion_s", "peak_rss_mb"):
        if key in server:
            values[key] = server[key]
    inline_p50 = values.get("inline.p50")
    pipeline_p50 = server.get("pipeline_ms", {}).get("p50")
    if inline_p50 and pipeline_p50:
        values["speedup"] = round(pipeline_p50 / inline_p50, 2)
    expanded = row_of(results.get("expansion", {}).get("rows", {}), "engine")
    if expanded.get("latency_ms"):
        values["expand.p50"] = expanded["latency_ms"]["p50"]
    ksr = results.get("ksr", {})
    fresh = row_of(ksr, FRESH_SYSTEM)
    if "ksr" in fresh:
        values["ksr.fresh"], values["ksr.fresh_ghost"] = fresh["ksr"], fresh["ksr_ghost_only"]
    if "peak_rss_mb" in fresh:
        values["fresh_rss_mb"] = fresh["peak_rss_mb"]
    product, trigram = row_of(ksr, PRODUCT_SYSTEM), row_of(ksr, TRIGRAM_SYSTEM)
    if "ksr" in product:
        values["ksr.full"], values["ksr.ghost"] = product["ksr"], product["ksr_ghost_only"]
        if "ksr" in trigram and trigram["prompts"] == product["prompts"]:
            values["ksr.gain"] = round(product["ksr"] - trigram["ksr"], 4)
            values["ksr.gain_ghost"] = round(
                product["ksr_ghost_only"] - trigram["ksr_ghost_only"], 4
            )
    rows = []
    for label, key, comparison, goal in TARGETS:
        value = values.get(key)
        if value is None:
            rows.append([label, f"{comparison} {goal}", None, "not measured"])
            continue
        met = {"<=": value <= goal, ">=": value >= goal, ">": value > goal}[comparison]
        rows.append([label, f"{comparison} {goal}", value, "yes" if met else "**no**"])
    return rows


def _vocabulary_section(rows: dict[str, Any] | None) -> list[str]:
    """Tag packs on modern and 2022 prompts, CLIP token agreement, 10,000 LoRA files."""
    if not rows:
        return []
    parts = ["## Today's prompt vocabulary: tags, LoRAs and the CLIP token budget", ""]
    ksr = [
        [
            corpus,
            packs,
            row.get("statistics", "not recorded"),
            row["prompts"],
            row["ksr"],
            row["ksr_ghost_only"],
            row["menu_acceptances"],
            *_latency(row.get("latency_ms", {}).get("completion")),
            f"`{row.get('commit', '?')}`",
        ]
        for corpus in ("modern", "dev")
        for packs in ("on", "off")
        if "ksr" in (row := rows.get(f"ksr_{corpus}_tags_{packs}", {}))
    ]
    if ksr:
        parts += [
            "KSR typed through `prompt-ls` (default model with the corpus statistics the store "
            "has: `pack` as a fresh install ships it, `full` after `prompt-models stats`; no "
            'personal layer) with the Danbooru tag pack on (`tagPacks: ["danbooru"]`) and off '
            "(`[]`). `modern`: a seeded sample of `modern/modern_dev.txt` (2023 SDXL/anime-style "
            "prompts, evaluation only); `dev`: the first prompts of the KSR sample of 2022 dev "
            "prompts above.",
            "",
            _table(
                [
                    "prompts",
                    "tags",
                    "statistics",
                    "n",
                    "KSR ghost+menu",
                    "KSR ghost only",
                    "menu acceptances",
                    "completion p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "commit",
                ],
                ksr,
            ),
            "",
        ]
    tokens = rows.get("tokens", {})
    if "equal" in tokens:
        parts += [
            f"CLIP token ids equal to OpenAI's `simple_tokenizer` (clip-anytorch) on "
            f"**{tokens['equal']} of {tokens['prompts']}** prompts (the first 500 of dev and "
            "of modern dev); counting a prompt as A1111 does (`promptAutocomplete.tokens`, the "
            f"diagnostics): p50 {tokens['budget_ms'].get('p50')} ms, p95 "
            f"{tokens['budget_ms'].get('p95')} ms, uncached.",
            "",
        ]
    elif tokens:
        parts += [f"CLIP token agreement: not measured ({tokens.get('unavailable')}).", ""]
    cost = rows.get("lora_cost", {})
    if "scan_s" in cost:
        parts += [
            f"A keystroke with {cost['lora_files']:,} LoRA files in `loraDirs`: the folder is "
            f"scanned in a background thread ({cost['scan_s']} s here) and a request reads the "
            f"last scan ({cost['lookup_us_p50']} µs p50). Completion latency typing "
            f"{cost['prompts']} dev prompts key by key through `prompt-ls`:",
            "",
            _table(
                ["loraDirs", "completion p50 ms", "p95 ms", "p99 ms"],
                [
                    ["none", *_latency(cost.get("completion_ms_without"))],
                    [f"{cost['lora_files']:,} files", *_latency(cost.get("completion_ms_with"))],
                    ["`<lora:` names", *_latency(cost.get("lora_name_completion_ms"))],
                ],
            ),
            "",
        ]
    measured = [row for row in rows.values() if isinstance(row, dict) and "command" in row]
    parts += ["Produced by:", "", _commands(measured), ""]
    return parts


def _personal_section(found: dict[str, Any] | None, assets: Path, rel: Path) -> list[str]:
    """The personal layer: learning curve (with its chart), 2022 check, ablation, scale."""
    if not found or not found.get("curve"):
        return []
    curve = found["curve"]

    def draw(axes: Any) -> None:
        axes.plot([r["learned"] for r in curve], [r["ksr"] for r in curve], marker="o")
        axes.set_xscale("symlog", linthresh=100)
        axes.set_xlabel("modern prompts learned (first N lines of modern_dev.txt)")
        axes.set_ylabel("KSR, ghost + menu")
        axes.axhline(0.5, linestyle="--", linewidth=0.8, color="grey")

    _chart(assets / "personal.png", draw)
    parts = [
        "## Personal layer (learns its user)",
        "",
        "One server learns the first lines of `modern/modern_dev.txt` (Civitai 2023 styles; "
        "evaluation only, nothing counted from it is kept) with `promptAutocomplete.learn`, "
        "N at a time, and after each N types a fixed sample of "
        f"{curve[0]['prompts']} of its last {found['test_pool']:,} lines "
        "(`random.Random(1234).sample`), which it never learned. Target: KSR >= 0.50 after "
        "5,000 learned.",
        "",
        _table(
            ["learned", "prompts typed", "KSR ghost+menu", "p50 ms", "p95 ms", "p99 ms"],
            [[r["learned"], r["prompts"], r["ksr"], *_latency(r.get("latency_ms"))] for r in curve],
        ),
        "",
        f"![KSR after learning N prompts]({rel}/personal.png)",
        "",
    ]
    if found.get("dev_2022"):
        parts += [
            "The 2022-style dev prompts (the KSR sample's first prompts) through the same "
            "servers, before and after the 5,000 modern prompts (it may fall by 0.01 at most):",
            "",
            _table(
                ["learned", "prompts typed", "KSR ghost+menu"],
                [[r["learned"], r["prompts"], r["ksr"]] for r in found["dev_2022"]],
            ),
            "",
        ]
    if found.get("tuning"):
        parts += [
            "Ablation of the personal weight (the most the user's statistics may weigh, "
            "`EngineSettings.personal_weight`; the product's in bold), in-process after "
            "learning modern_dev's first N lines, on "
            f"{found['tuning'][0]['prompts']} prompts of its lines 4,500-5,000 (never the "
            "test region) and as many 2022 dev prompts outside the KSR sample (seeded), "
            "where it was chosen; 0 is the product without the personal layer:",
            "",
            _table(
                ["learned", "prompts", "personal weight", "KSR ghost+menu"],
                [
                    [
                        r["learned"],
                        r.get("style", "modern"),
                        f"**{r['weight']}**" if r["weight"] == found["weight"] else r["weight"],
                        r["ksr"],
                    ]
                    for r in found["tuning"]
                ],
            ),
            "",
        ]
    scale = found.get("at_scale")
    if scale:
        latency = scale.get("latency_ms", {})
        parts += [
            f"With {scale['learned']:,} prompts learned (2022 training prompts standing in "
            f"for a heavy user): learning and counting them took {scale['learn_and_count_s']} s "
            "in one command; one more prompt's learn command answered in "
            f"{scale['learn_one_ms'].get('p50')} ms p50 / {scale['learn_one_ms'].get('p99')} "
            f"ms p99 (round trip); typing {scale['typed_prompts']} dev prompts, completion "
            f"p50 {latency.get('completion', {}).get('p50')} ms / p99 "
            f"{latency.get('completion', {}).get('p99')} ms, ghost text p50 "
            f"{latency.get('inline', {}).get('p50')} ms / p99 "
            f"{latency.get('inline', {}).get('p99')} ms; the personal store is "
            f"{scale['store_mb']} MB on disk; the server's resident memory went from "
            f"{scale['resident_mb_before']} to {scale['resident_mb_after']} MB (load "
            f"average {scale.get('load_average')} on a shared machine).",
            "",
        ]
    rows = curve + found.get("dev_2022", []) + found.get("tuning", [])
    parts += ["Produced by:", "", _commands(rows), ""]
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Re-render the benchmark report from its results.json; measures nothing.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT / "docs" / "BENCHMARKS.md",
        help="report path; its results are benchmarks/results.json beside it",
    )
    args = parser.parse_args(argv)
    source = results_path(args.output)
    if not source.is_file():
        print(f"python -m benchmarks.report: error: no results at {source}", file=sys.stderr)
        return 1
    write(json.loads(source.read_text(encoding="utf-8")), args.output)
    print(f"wrote {args.output} from {source}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
