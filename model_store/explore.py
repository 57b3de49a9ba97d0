"""The study's data analysis: length distributions, frequent phrases and summary statistics."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from model_store.corpus import Corpus


def summary(values: Sequence[int]) -> dict[str, float]:
    """Count, mean, quartiles and max, as the study reported them."""
    ordered = sorted(values)
    q1, median, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (ordered[0],) * 3
    return {
        "count": len(ordered),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "25%": q1,
        "50%": median,
        "75%": q3,
        "max": ordered[-1],
    }


def frequent_phrases(prompts: Sequence[str], top: int = 25) -> list[tuple[str, int]]:
    """Most frequent comma-separated phrases, lower-cased (how prompts are actually built)."""
    counts: Counter[str] = Counter()
    for prompt in prompts:
        counts.update({p.strip().lower() for p in prompt.split(",") if p.strip()})
    return counts.most_common(top)


def frequent_ngrams(prompts: Sequence[str], n: int, top: int = 25) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for prompt in prompts:
        words = prompt.lower().replace(",", " ").split()
        counts.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return counts.most_common(top)


def write_report(corpus: Corpus, out_dir: Path, tokenizer_dir: Path | None = None) -> Path:
    """Write REPORT.md with PNG histograms into ``out_dir``; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = corpus.prompts
    lengths: dict[str, list[int]] = {
        "characters": [len(p) for p in prompts],
        "words": [len(p.split()) for p in prompts],
    }
    if tokenizer_dir is not None:
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
        encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        lengths["tokens"] = [len(ids) for ids in encoded]

    lines = [
        f"# Corpus report: {corpus.name}",
        "",
        f"{len(prompts):,} prompts after cleaning and de-duplication (sha256 `{corpus.sha256}`).",
        "",
        "## Lengths per prompt",
        "",
        "| unit | count | mean | min | 25% | 50% | 75% | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for unit, values in lengths.items():
        s = summary(values)
        lines.append(
            f"| {unit} | {s['count']:,} | {s['mean']:.1f} | {s['min']} | {s['25%']:.0f} "
            f"| {s['50%']:.0f} | {s['75%']:.0f} | {s['max']} |"
        )
        fig, ax = plt.subplots(figsize=(6, 3.5))
        cap = sorted(values)[int(0.99 * (len(values) - 1))]
        ax.hist([min(v, cap) for v in values], bins=50)
        ax.set_xlabel(f"{unit} per prompt (99th percentile and above in the last bin)")
        ax.set_ylabel("prompts")
        fig.tight_layout()
        fig.savefig(out_dir / f"{unit}.png", dpi=100)
        plt.close(fig)
    lines += ["", *[f"![{u}]({u}.png)" for u in lengths], ""]
    for title, rows in [
        ("Most frequent comma-separated phrases", frequent_phrases(prompts)),
        ("Most frequent word bigrams", frequent_ngrams(prompts, 2)),
        ("Most frequent word trigrams", frequent_ngrams(prompts, 3)),
    ]:
        lines += [f"## {title}", "", "| phrase | prompts | share |", "|---|---|---|"]
        lines += [f"| {p} | {c:,} | {c / len(prompts):.1%} |" for p, c in rows]
        lines.append("")
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
