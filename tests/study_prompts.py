"""Made-up prompts for the baseline tests: regular enough for a tiny model to learn from.

Written for these tests (nothing from the corpus): every prompt ends with
", trending on artstation", and "art" also starts "artwork" and "artistic", so completing
"art" after "trending on" is a real decision.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

SUBJECTS = [
    "a castle on a hill",
    "a portrait of a woman",
    "a red fox in the snow",
    "a robot in a garden",
    "an old lighthouse at dawn",
    "a city street at night",
    "a dragon over the sea",
    "a cat wearing a hat",
    "a ship in a storm",
    "a forest with a river",
]
STYLES = [
    "digital artwork",
    "oil painting",
    "artistic photo",
    "watercolor",
    "concept art",
    "matte painting",
]
DETAILS = ["highly detailed", "soft light", "8k", "dramatic lighting", "sharp focus"]


def make_prompts(count: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = list(itertools.product(SUBJECTS, STYLES, DETAILS))
    rng.shuffle(combos)
    prompts = []
    for index in range(count):
        subject, style, detail = combos[index % len(combos)]
        # the number first: every prompt is its own family, so held-out splits are not empty
        prompts.append(f"scene {index}, {subject}, {style}, {detail}, trending on artstation")
    return prompts


def write_prompts(path: Path, count: int = 600) -> Path:
    path.write_text("\n".join(make_prompts(count)) + "\n", encoding="utf-8")
    return path
