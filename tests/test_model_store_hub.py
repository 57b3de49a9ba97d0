"""`prompt-models pull hf:...` for real, against a fake hub on 127.0.0.1 (tests/fake_hub.py):
huggingface_hub does the HTTP, the store does the checking and installing (issue 19)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store.checkpoint import verify
from tests.conftest import subprocess_env
from tests.fake_hub import FakeHub, Repo, serving

PROCESS_WAIT_S = 300.0  # bounds a hung download on a busy machine; not a speed assertion
NAME = "hf-org--tiny"


@pytest.fixture(scope="module")
def model_files(default_model_dir: Path) -> dict[str, bytes]:
    """The embedded model's files, as a hub repository would hold them."""
    return {
        file.name: file.read_bytes()
        for file in default_model_dir.iterdir()
        if file.name != "manifest.json"
    }


@pytest.fixture()
def hub(model_files: dict[str, bytes]) -> Iterator[FakeHub]:
    fake = FakeHub(
        repos={
            "org/tiny": Repo(dict(model_files)),
            "org/pickled": Repo(
                {"config.json": model_files["config.json"], "pytorch_model.bin": b"\x80\x04K."}
            ),
        }
    )
    with serving(fake):
        yield fake


def pull(home: Path, ref: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(
        PROMPT_AUTOCOMPLETE_HOME=str(home),
        HF_HOME=str(home / "hf-home"),
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run(
        [sys.executable, "-m", "model_store.cli", "pull", ref],
        capture_output=True,
        text=True,
        env=env,
        timeout=PROCESS_WAIT_S,
    )


def installed(home: Path) -> list[str]:
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def test_a_pull_downloads_with_progress_and_a_second_is_served_offline(
    hub: FakeHub, tmp_path: Path, model_files: dict[str, bytes]
) -> None:
    result = pull(tmp_path, "hf:org/tiny", hub.url)
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr  # huggingface_hub's progress bar
    target = Path(result.stdout.strip())
    assert target == tmp_path / "models" / NAME
    assert {name: (target / name).read_bytes() for name in model_files} == model_files
    assert verify(target, NAME, "repair").manifest["source"]["hub"] == "org/tiny"

    gone = "http://127.0.0.1:9"  # the discard port: nothing listens, the network is gone
    again = pull(tmp_path, "hf:org/tiny", gone)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(target)


def test_a_connection_dropped_mid_file_is_resumed(
    hub: FakeHub, tmp_path: Path, model_files: dict[str, bytes]
) -> None:
    # huggingface_hub writes what it received in 10 MiB chunks, so the drop comes after the
    # first chunk (the weights are 10.6 MB) for the resumed request to start past zero
    hub.repos["org/tiny"].drop_at["model.safetensors"] = (
        len(model_files["model.safetensors"]) - 4096
    )
    result = pull(tmp_path, "hf:org/tiny", hub.url)
    assert result.returncode == 0, result.stderr
    first, resumed = hub.downloads_of("model.safetensors")
    assert first is None and resumed is not None and resumed.startswith("bytes=")
    verify(tmp_path / "models" / NAME, NAME, "repair")


def test_a_file_that_does_not_match_its_digest_installs_nothing(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.repos["org/tiny"].advertised_sha256["model.safetensors"] = "0" * 64
    result = pull(tmp_path, "hf:org/tiny", hub.url)
    assert result.returncode == 1
    assert "model.safetensors" in result.stderr and "digest" in result.stderr
    assert "Traceback" not in result.stderr
    assert installed(tmp_path) == []
    assert not (tmp_path / "partial" / NAME).exists()


def test_a_repository_with_pickled_weights_only_is_refused_before_downloading(
    hub: FakeHub, tmp_path: Path
) -> None:
    result = pull(tmp_path, "hf:org/pickled", hub.url)
    assert result.returncode == 1
    assert "no safetensors weights" in result.stderr and "Traceback" not in result.stderr
    assert hub.downloads_of("pytorch_model.bin") == []
    assert installed(tmp_path) == []
