"""The model store: resolve a model reference to a verified checkpoint directory.

References:
- ``default``: the model shipped inside this package (works offline at once);
- a local directory (``./my-model``, ``/abs/path``, ``~/m``);
- ``hf:<repo>[@revision]``: downloaded with huggingface_hub (safetensors only, resumable);
- a stored name (``<store>/models/<name>``);
- a preset name (``tiny``, ``small``, ``base``): trained from the configured corpus on first use.

Downloads and training happen under a per-name file lock: a second process asking for the
same model waits and then uses the result. Results are assembled in a temporary sibling,
verified, then renamed into place, so an interrupted write never leaves a model that loads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from model_store import paths
from model_store.checkpoint import (
    MANIFEST,
    Checkpoint,
    CheckpointError,
    read_manifest,
    sha256_file,
    verify,
    write_manifest,
)
from model_store.presets import PRESETS

if TYPE_CHECKING:  # numpy is imported only when statistics are looked for
    from model_store.ngram.model import WordNgram

ProgressCallback = Callable[[str, float | None], None]
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
# The statistics pack counted from the default model's training corpus (``prompt-models stats
# --pack``): what makes completions good on a fresh install, with no corpus at hand.
DEFAULT_STATS_DIR = Path(__file__).resolve().parent / "default_stats"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HF_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md"]


class StoreError(Exception):
    """A model reference cannot be resolved; the message says what to do instead."""


def validate_name(name: str) -> str:
    """Store names become directory names: refuse anything that could escape the store."""
    if not _NAME.match(name) or name in {".", ".."} or ".." in name:
        raise StoreError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 64 characters, no path separators)"
        )
    return name


def _quiet(message: str, fraction: float | None) -> None:
    del message, fraction


class ModelStore:
    """Models under ``root``: platformdirs' user data dir, or $PROMPT_AUTOCOMPLETE_HOME."""

    def __init__(self, root: Path | None = None):
        self.root = root if root is not None else paths.store_dir()
        self.models_dir = self.root / "models"
        self.runs_dir = self.root / "runs"

    # -- resolving ---------------------------------------------------------------------------

    def resolve(
        self,
        ref: str,
        *,
        progress: ProgressCallback | None = None,
        data: str | None = None,
    ) -> Checkpoint:
        """A verified checkpoint for ``ref``, downloading or training it first if needed."""
        progress = progress or _quiet
        ref = ref.strip()
        if not ref:
            raise StoreError("empty model reference")
        self.remove_leftovers()
        if ref == "default":
            progress("verifying the default model", None)
            return verify(DEFAULT_MODEL_DIR, "default", REINSTALL_HINT)
        if ref.startswith("hf:"):
            return self._resolve_hub(ref, progress)
        if _looks_like_path(ref):
            return self._resolve_directory(Path(ref).expanduser(), progress)
        name = validate_name(ref)
        stored = self.models_dir / name
        if (stored / MANIFEST).is_file():
            progress(f"verifying {name}", None)
            return verify(stored, name, self.repair_hint(name))
        if name in PRESETS:
            return self.train(name, data=data, progress=progress)
        raise StoreError(
            f"no model {name!r} in {self.models_dir}; known presets to train: "
            f"{', '.join(PRESETS)}; or use a directory or hf:<repo>"
        )

    def repair_hint(self, name: str) -> str:
        if name == "default":
            return REINSTALL_HINT
        return f"repair it with `prompt-models rm {name}` then `prompt-models pull {name}`"

    def _resolve_directory(self, directory: Path, progress: ProgressCallback) -> Checkpoint:
        if not directory.is_dir():
            raise StoreError(f"{directory}: no such model directory")
        if not (directory / MANIFEST).is_file():
            raise StoreError(
                f"{directory}: has no {MANIFEST}; create one with "
                f"`prompt-models verify {directory} --write-manifest` if you trust these files"
            )
        progress(f"verifying {directory}", None)
        return verify(directory, directory.name, f"restore the files of {directory}")

    # -- listing and removal ---------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every model that resolves without work, plus presets that would be trained."""
        rows: list[dict[str, Any]] = [_row("default", DEFAULT_MODEL_DIR, "embedded")]
        if self.models_dir.is_dir():
            for child in sorted(self.models_dir.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    rows.append(_row(child.name, child, "stored"))
        for row in rows:
            row["statistics"] = self.statistics_label(Path(row["path"]))
        stored = {row["name"] for row in rows}
        for name in PRESETS:
            if name not in stored:
                rows.append({"name": name, "status": "trainable", "path": "", "kind": "recipe"})
        return rows

    def word_stats_dir(self, checkpoint: Checkpoint) -> Path | None:
        """The statistics of ``checkpoint``'s training corpus: the full ones in the store when
        they were built (``prompt-models stats``), else the pack in the package when it was
        counted from that corpus, else None."""
        from model_store.ngram import storage

        digest = _corpus_digest(checkpoint)
        if digest is None:
            return None
        full = storage.built_dir(digest, self.root / "wordstats")
        if full is not None:
            return full
        return DEFAULT_STATS_DIR if _corpus_digest_of(DEFAULT_STATS_DIR) == digest else None

    def statistics_label(self, model_dir: Path) -> str:
        """Which statistics a model directory is served with: "full", "pack" or "none"."""
        try:
            checkpoint = Checkpoint(model_dir.name, model_dir, read_manifest(model_dir))
        except CheckpointError:
            return "none"
        directory = self.word_stats_dir(checkpoint) if checkpoint.kind == "causal-lm" else None
        if directory is None:
            return "none"
        return "pack" if directory == DEFAULT_STATS_DIR else "full"

    def word_stats(self, checkpoint: Checkpoint) -> WordNgram | None:
        """The statistics of ``word_stats_dir``, checked against their manifest and mapped.

        Raises CheckpointError naming a damaged file and how to repair it.
        """
        from model_store.ngram import storage

        directory = self.word_stats_dir(checkpoint)
        if directory is None:
            return None
        if directory == DEFAULT_STATS_DIR:
            return storage.load(directory, REINSTALL_HINT, name="default statistics")
        return storage.load(directory, storage.rebuild_hint(directory))

    def remove_leftovers(self) -> list[Path]:
        """Temporary directories of writers that were killed (their pid is not running):
        ``models/.tmp-NAME-PID`` installs and ``wordstats/*.PID.tmp`` statistics."""
        candidates = [*_glob(self.models_dir, ".tmp-*-*"), *_glob(self.root / "wordstats", "*.tmp")]
        removed = []
        for path in candidates:
            owner = _LEFTOVER_PID.search(path.name)
            if owner is not None and path.is_dir() and not _running(int(owner.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def path_of(self, name: str) -> Path:
        if name == "default":
            return DEFAULT_MODEL_DIR
        return self.models_dir / validate_name(name)

    def remove(self, name: str) -> Path:
        if name == "default":
            raise StoreError("the default model is part of the package and cannot be removed")
        target = self.models_dir / validate_name(name)
        if not target.exists():
            raise StoreError(f"no model {name!r} in {self.models_dir}")
        with self._lock(name):
            shutil.rmtree(target)
        return target

    # -- training ------------------------------------------------------------------------------

    def train(
        self,
        preset_name: str,
        *,
        data: str | None = None,
        name: str | None = None,
        max_minutes: float | None = None,
        max_steps: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Checkpoint:
        """Train a preset (resuming an interrupted run) and publish it as ``name``.

        Under ``torchrun`` every process calls this: rank 0 holds the lock (which still keeps
        other jobs out), reads the corpus first and publishes; the others follow it
        (model_store.distributed). ``max_steps`` replaces the preset's, as a recipe sized for
        one machine does, and is recorded in the manifest's preset and command.
        """
        from model_store import distributed
        from model_store.corpus import load_corpus
        from model_store.presets import get_preset

        preset = get_preset(preset_name)
        if max_steps is not None:
            preset = replace(preset, max_steps=max_steps)
        name = validate_name(name or preset_name)
        if distributed.world_size() > 1 and preset.kind != "causal-lm":
            raise StoreError(
                f"{preset_name} is a {preset.kind} preset, which trains in one process only; "
                "run it without torchrun or accelerate launch"
            )
        main = distributed.is_main()
        progress = (progress or _quiet) if main else _quiet
        distributed.join()
        with self._lock(name, progress) if main else nullcontext():
            existing = self.models_dir / name
            if distributed.share((existing / MANIFEST).is_file()):
                return verify(existing, name, self.repair_hint(name))
            progress(f"reading the corpus for {name}", None)
            with distributed.main_first():
                corpus = load_corpus(data)
            run_dir = self.runs_dir / name
            trainer = self._trainer_for(preset.kind)
            trained = trainer(preset, corpus, run_dir, max_minutes=max_minutes, progress=progress)
            if not trained.finished:
                raise StoreError(
                    f"training of {name!r} stopped at {trained.tokens_seen:,} tokens before its "
                    f"last step; rerun the same command to resume from {run_dir}"
                )
            steps = [] if max_steps is None else ["--max-steps", str(max_steps)]
            command = " ".join(
                ["prompt-models", "train", preset_name, "--data", str(data or ""), *steps]
            )
            fields = {
                "kind": preset.kind,
                "preset": preset.describe(),
                "corpus": {
                    "name": corpus.name,
                    "sha256": corpus.sha256,
                    "prompts": len(corpus.prompts),
                },
                "training": {"command": command, "tokens_seen": trained.tokens_seen},
                "metrics": {
                    "data": f"held-out prompt families of {corpus.name}",
                    **trained.metrics,
                },
            }
            with distributed.main_first():
                if main:
                    return self._publish(trained.path, name, fields, progress)
                return verify(existing, name, self.repair_hint(name))

    def _trainer_for(self, kind: str) -> Callable[..., Any]:
        """The training function of a preset kind (imported lazily: torch is slow to load)."""
        if kind == "word-lstm":
            from model_store.study.lstm import train_word_lstm

            return train_word_lstm
        if kind == "masked-lm":
            from model_store.study.mlm import train_masked_lm

            # a fine-tuning preset names its base model as a store reference
            return partial(train_masked_lm, resolve=self.resolve)
        from model_store.training import train_causal_lm

        return train_causal_lm

    # -- downloading ---------------------------------------------------------------------------

    def _resolve_hub(self, ref: str, progress: ProgressCallback) -> Checkpoint:
        repo, _, revision = ref.removeprefix("hf:").partition("@")
        if not re.match(r"^[\w.-]+(/[\w.-]+)?$", repo):
            raise StoreError(f"invalid Hugging Face repository {repo!r} in {ref!r}")
        suffix = f"-at-{revision}" if revision else ""
        name = validate_name("hf-" + repo.replace("/", "--") + suffix)
        stored = self.models_dir / name
        if (stored / MANIFEST).is_file():
            progress(f"verifying {name}", None)
            return verify(stored, name, self.repair_hint(name))
        return self.pull_hub(repo, revision or None, name, progress)

    def pull_hub(
        self, repo: str, revision: str | None, name: str, progress: ProgressCallback
    ) -> Checkpoint:
        """Download safetensors weights and configs; partial files resume on the next try.

        The repository's file list is read first: one with pickled weights only is refused
        before anything is downloaded. Every downloaded file must match the digest the hub
        advertises (sha256 for LFS files, the git blob id for others), or nothing is installed.
        """
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        with self._lock(name, progress):
            stored = self.models_dir / name
            if (stored / MANIFEST).is_file():
                return verify(stored, name, self.repair_hint(name))
            staging = self.root / "partial" / name
            progress(f"downloading {repo} from the Hugging Face Hub", None)
            try:
                info = huggingface_hub.HfApi().model_info(
                    repo, revision=revision, files_metadata=True
                )
                wanted = [s for s in info.siblings or [] if _hub_file_wanted(s.rfilename)]
                if not any(s.rfilename.endswith(".safetensors") for s in wanted):
                    raise StoreError(
                        f"{repo} has no safetensors weights; pickled weights are never loaded"
                    )
                staging.mkdir(parents=True, exist_ok=True)
                huggingface_hub.snapshot_download(
                    repo_id=repo,
                    revision=info.sha or revision,
                    local_dir=staging,
                    allow_patterns=_HF_FILES,
                )
            except LocalEntryNotFoundError as exc:
                raise StoreError(
                    f"cannot download {repo}: the Hugging Face Hub is unreachable (offline?); "
                    "use the embedded `default` model or a local directory"
                ) from exc
            except (HfHubHTTPError, OSError) as exc:
                raise StoreError(
                    f"cannot download {repo}: {exc}; rerun the same command to resume"
                ) from exc
            shutil.rmtree(staging / ".cache", ignore_errors=True)
            try:
                _check_hub_digests(staging, wanted, repo)
            except StoreError:
                shutil.rmtree(staging, ignore_errors=True)  # the next pull starts over
                raise
            fields = {
                "kind": _hub_kind(staging),
                "source": {"hub": repo, "revision": revision, "commit": info.sha},
            }
            checkpoint = self._publish(staging, name, fields, progress)
            shutil.rmtree(staging, ignore_errors=True)
            return checkpoint

    # -- plumbing ------------------------------------------------------------------------------

    def _publish(
        self, source: Path, name: str, fields: dict[str, Any], progress: ProgressCallback
    ) -> Checkpoint:
        """Copy into a temporary sibling, write and verify the manifest, then rename."""
        progress(f"installing {name}", None)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.models_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".*"))
            write_manifest(tmp, name, **fields)
            verify(tmp, name, self.repair_hint(name))
            os.replace(tmp, self.models_dir / name)
        except OSError as exc:
            raise StoreError(f"cannot install {name} into {self.models_dir}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return verify(self.models_dir / name, name, self.repair_hint(name))

    @contextmanager
    def _lock(self, name: str, progress: ProgressCallback = _quiet) -> Iterator[None]:
        """Held while downloading or training ``name``; a second process waits here."""
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_dir / f"{name}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            progress(f"waiting for another process preparing {name}", None)
            print(f"waiting for another process preparing {name} ...", file=sys.stderr)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()


REINSTALL_HINT = "reinstall the package (pip install --force-reinstall prompt-autocompletion)"


def _hub_file_wanted(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _HF_FILES)


def _check_hub_digests(staging: Path, files: list[Any], repo: str) -> None:
    """Each downloaded file against the digest the hub lists for it (a mirror or proxy that
    serves other bytes is caught here, before a manifest is written over them)."""
    for sibling in files:
        file = staging / sibling.rfilename
        if sibling.lfs is not None:
            expected, actual = sibling.lfs.sha256, sha256_file(file) if file.is_file() else None
        elif sibling.blob_id:
            expected, actual = sibling.blob_id, _git_blob_id(file) if file.is_file() else None
        else:
            continue  # the hub gave no digest for it: the manifest alone protects it
        if actual != expected:
            raise StoreError(
                f"{sibling.rfilename} from {repo} does not match the digest the hub lists "
                f"({'missing' if actual is None else 'different bytes'}); nothing was "
                "installed; pull again, and if it persists the download is being tampered with"
            )


def _git_blob_id(file: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % file.stat().st_size)
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_kind(directory: Path) -> str:
    """The manifest kind of a download: masked-lm for ...ForMaskedLM (distilroberta-base)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "causal-lm"
    architectures = config.get("architectures") or []
    return "masked-lm" if any(a.endswith("ForMaskedLM") for a in architectures) else "causal-lm"


def _corpus_digest(checkpoint: Checkpoint) -> str | None:
    corpus = checkpoint.manifest.get("corpus")
    digest = corpus.get("sha256") if isinstance(corpus, dict) else None
    return digest if isinstance(digest, str) else None


def _corpus_digest_of(directory: Path) -> str | None:
    try:
        manifest = read_manifest(directory)
    except CheckpointError:
        return None
    return _corpus_digest(Checkpoint(directory.name, directory, manifest))


_LEFTOVER_PID = re.compile(r"[-.](\d+)(?:\.tmp)?$")


def _glob(directory: Path, pattern: str) -> list[Path]:
    try:
        return list(directory.glob(pattern))
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Whether a process with this id exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref


def _row(name: str, directory: Path, status: str) -> dict[str, Any]:
    try:
        manifest = read_manifest(directory)
    except CheckpointError:
        return {"name": name, "status": "broken (no manifest)", "path": str(directory), "kind": "?"}
    size = sum(int(entry.get("size", 0)) for entry in manifest["files"].values())
    metrics = manifest.get("metrics") or {}
    return {
        "name": name,
        "status": status,
        "path": str(directory),
        "kind": manifest.get("kind", "causal-lm"),
        "size_mb": round(size / 1e6, 1),
        "token_perplexity": metrics.get("token_perplexity"),
        "created": manifest.get("created"),
    }
