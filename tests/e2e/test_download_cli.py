"""``--download`` on sast.train, sast.evaluate and the grid: tonic fetches into --root; offline is one line, exit 2.

The network is never used: tonic's HTTP call (``urllib.request.urlopen``) is replaced by one that
fails as an unresolvable host does, and tonic's dataset class, where a test needs the download to
succeed, by one that writes a recording in tonic's layout.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

tonic = pytest.importorskip("tonic", reason="--download goes through tonic (pip install 'sast-toolkit[tonic]')")

NMNIST_HOST = "data.mendeley.com"  # where tonic's NMNIST class downloads from


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL tonic opens fails as a host that does not resolve; the URLs asked for are listed."""
    asked: list[str] = []

    def unreachable(request, *args, **kwargs):
        asked.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    return asked


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("sast.data: downloading")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_train_offline_is_one_line_naming_the_host(tmp_path, offline, capsys, tiny_train_args) -> None:
    from apps.train import main

    root = tmp_path / "data"
    code = main(["--data", "nmnist", "--root", str(root), "--download", "--epochs", "1",
                 "--run-dir", str(tmp_path / "run"), *tiny_train_args])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and offline and all(NMNIST_HOST in url for url in offline)
    assert f"cannot reach {NMNIST_HOST}" in line and str(root) in line


def test_evaluate_offline_is_one_line_naming_the_host(tmp_path, offline, capsys, tiny_run) -> None:
    from sast.evaluate import main

    code = main(["--model", str(tiny_run / "ckpt.pt"), "--data", "nmnist", "--root", str(tmp_path / "d"),
                 "--download", "--json", str(tmp_path / "e.json"), "--no-progress"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"cannot reach {NMNIST_HOST}" in line and "nmnist test" in line
    assert not (tmp_path / "e.json").exists()


def test_grid_offline_is_one_line_naming_the_host(tmp_path, offline, capsys) -> None:
    from apps.experiments.cli import main

    code = main(["grid", "--dataset", "nmnist", "--root", str(tmp_path / "d"), "--download", "--set", "rho=0",
                 "--seeds", "1", "--epochs", "1", "--no-corruptions", "--out", str(tmp_path / "g"), "--no-progress"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"cannot reach {NMNIST_HOST}" in line and offline


def test_download_of_a_generated_set_is_refused(tmp_path, offline, capsys, tiny_train_args) -> None:
    from apps.train import main

    code = main(["--data", "synth-nmnist", "--download", "--run-dir", str(tmp_path / "r"), *tiny_train_args])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "generated, not downloaded" in line and "nmnist" in line and not offline


def test_evaluate_downloads_the_missing_split_into_root_and_reads_it(tmp_path, monkeypatch, offline,
                                                                     tiny_run) -> None:
    """The download succeeds (a stand-in for tonic's class writes the files), then evaluation reads them."""
    from sast.evaluate import main
    from tests.unit.test_data_real import nmnist_bytes, random_events

    made: list[tuple[str, bool]] = []

    def fake_nmnist(save_to: str, train: bool) -> None:
        made.append((save_to, train))
        rng = np.random.default_rng(0)
        for digit in range(10):
            folder = Path(save_to) / "NMNIST" / ("Train" if train else "Test") / str(digit)
            folder.mkdir(parents=True)
            (folder / "00001.bin").write_bytes(nmnist_bytes(random_events(rng, 50, 34, 300_000)))

    monkeypatch.setattr(tonic.datasets, "NMNIST", fake_nmnist)
    root = tmp_path / "data"
    args = ["--model", str(tiny_run / "ckpt.pt"), "--data", "nmnist", "--root", str(root), "--download",
            "--json", str(tmp_path / "e.json"), "--no-progress", "--cache-dir", str(tmp_path / "c")]
    # the tiny model reads synth-nmnist's 34x34 frames, as N-MNIST's: its frames fit
    assert main(args) == 0
    assert made == [(str(root), False)] and (tmp_path / "e.json").exists() and not offline
    assert main(args) == 0 and len(made) == 1  # the files are there now: nothing is downloaded again


def test_every_download_flag_has_the_same_help(capsys) -> None:
    from apps.experiments.cli import build_parser as grid_parser
    from apps.train import build_parser as train_parser
    from sast.data import DOWNLOAD_HELP
    from sast.evaluate import main as evaluate

    for parser in (train_parser(), grid_parser()):
        actions = {a.dest: a for a in parser._actions}
        assert actions["download"].help == DOWNLOAD_HELP and actions["download"].default is False
    with pytest.raises(SystemExit):  # evaluate builds its parser inside main
        evaluate(["--help"])
    assert " ".join(DOWNLOAD_HELP.split()[:6]) in " ".join(capsys.readouterr().out.split())
