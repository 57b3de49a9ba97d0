"""Prompts in the files people already have: text files, generated PNGs, A1111 styles.

- text (``.txt``, ``.prompt``): one prompt per line (``Negative prompt:`` lines are negative);
- A1111 / Forge / SD.Next PNGs: the ``parameters`` text chunk (prompt, negative prompt, then
  the ``Steps:`` line);
- ComfyUI PNGs: the ``prompt`` chunk, the executed graph as JSON; the text of its
  CLIPTextEncode nodes, negative when a sampler takes it as its ``negative`` input;
- A1111 ``styles.csv``: columns ``name,prompt,negative_prompt``;
- folders of these, recursively.

Pillow reads the PNG chunks without decoding pixels. A file that cannot be read raises
``Refused`` with the reason, so an import can skip it and say why.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model_store.personal import Prompts, fold, split_lines, split_parameters

TEXT_SUFFIXES = {".txt", ".prompt"}
IMAGE_SUFFIXES = {".png"}
STYLE_SUFFIXES = {".csv"}
MAX_FILE_BYTES = 256 * 2**20
TEXT_INPUTS = ("text", "text_g", "text_l")  # CLIPTextEncode, CLIPTextEncodeSDXL


class Refused(Exception):
    """This file holds no prompts that can be read; the message says why."""


def files_under(paths: list[Path]) -> Iterator[Path]:
    """The paths given, with folders replaced by the readable files under them (sorted)."""
    suffixes = TEXT_SUFFIXES | IMAGE_SUFFIXES | STYLE_SUFFIXES
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
        else:
            yield path


def read_prompts(path: Path) -> Prompts:
    """The prompts in one file, by its kind (its suffix); raises ``Refused``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise Refused(f"cannot read it ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise Refused(f"larger than {MAX_FILE_BYTES // 2**20} MB")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _image_prompts(path)
    if suffix in STYLE_SUFFIXES:
        return _style_prompts(_text(path))
    if suffix in TEXT_SUFFIXES:
        return split_lines(_text(path))
    raise Refused(
        f"not a prompt file (reads {', '.join(sorted(TEXT_SUFFIXES | IMAGE_SUFFIXES))}"
        f" and styles.csv)"
    )


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise Refused("not UTF-8 text") from None
    except OSError as exc:
        raise Refused(f"cannot read it ({exc.strerror or exc})") from None


def _image_prompts(path: Path) -> Prompts:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            chunks: dict[str, Any] = dict(getattr(image, "text", {}) or image.info)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise Refused(f"not a readable PNG ({exc})") from None
    parameters = chunks.get("parameters")
    if isinstance(parameters, str) and parameters.strip():
        return split_parameters(parameters)
    graph = chunks.get("prompt")
    if isinstance(graph, str):
        return comfy_prompts(graph)
    raise Refused("no generation parameters (no A1111 'parameters' or ComfyUI 'prompt' chunk)")


def comfy_prompts(graph_json: str) -> Prompts:
    """The texts of a ComfyUI graph's CLIPTextEncode nodes (negative where a sampler's
    ``negative`` input links to them); a linked text (not a string) is skipped."""
    try:
        graph = json.loads(graph_json)
    except json.JSONDecodeError as exc:
        raise Refused(f"the ComfyUI 'prompt' chunk is not JSON ({exc.msg})") from None
    if not isinstance(graph, dict):
        raise Refused("the ComfyUI 'prompt' chunk is not a graph")
    nodes = {key: node for key, node in graph.items() if isinstance(node, dict)}
    negative_ids = {
        str(link[0])
        for node in nodes.values()
        for name, link in (node.get("inputs") or {}).items()
        if name == "negative" and isinstance(link, list) and link
    }
    positive: list[str] = []
    negative: list[str] = []
    for key, node in nodes.items():
        if "CLIPTextEncode" not in str(node.get("class_type", "")):
            continue
        inputs = node.get("inputs") or {}
        texts = [fold(inputs[name]) for name in TEXT_INPUTS if isinstance(inputs.get(name), str)]
        target = negative if key in negative_ids else positive
        target.extend(text for text in dict.fromkeys(texts) if text)
    if not positive and not negative:
        raise Refused("the ComfyUI graph has no CLIPTextEncode text")
    return Prompts(tuple(positive), tuple(negative))


def _style_prompts(text: str) -> Prompts:
    """A1111 styles: the prompt and negative prompt of each style; ``{prompt}`` (where the
    user's prompt goes) is left out."""
    rows = csv.DictReader(io.StringIO(text))
    if not rows.fieldnames or "prompt" not in rows.fieldnames:
        raise Refused("not an A1111 styles.csv (no 'prompt' column)")
    positive: list[str] = []
    negative: list[str] = []
    try:
        for row in rows:
            for column, target in (("prompt", positive), ("negative_prompt", negative)):
                value = _without_placeholder(row.get(column) or "")
                if value:
                    target.append(value)
    except csv.Error as exc:
        raise Refused(f"broken CSV ({exc})") from None
    return Prompts(tuple(positive), tuple(negative))


def _without_placeholder(text: str) -> str:
    parts = [fold(part) for part in text.replace("{prompt}", ",").split(",")]
    return ", ".join(part for part in parts if part)
