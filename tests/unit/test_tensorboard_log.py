"""The TensorBoard mirror's pieces without TensorBoard: the tags of each record, the status codes, the log's sinks.

The event files themselves are read back in tests/e2e/test_tensorboard.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from runfolder import STATUSES
from sast.runlog import MetricsLog
from sast.tensorboard_log import STATUS_CODES, TENSORBOARD_INSTALL, scalars, tensorboard_help

README = Path(__file__).resolve().parents[2] / "README.md"


def test_train_and_eval_records_at_their_step_and_epoch():
    train = {"kind": "train", "step": 30, "epoch": 2, "loss": 1.5, "grad_norm": 0.25, "grad_evals": 60}
    assert scalars(train) == [("train/loss", 1.5, 30), ("train/grad_norm", 0.25, 30)]  # no perturbed loss: not SAST
    evaluation = {"kind": "eval", "step": 33, "epoch": 3, "seconds": 0.5, "val_smooth_acc": 0.5, "val_hard_acc": 0.25,
                  "test_smooth_acc": 0.75, "test_hard_acc": 0.5, "test_gap": 0.25, "test_hard_loss": 2.0}
    assert scalars(evaluation) == [("eval/val_smooth_acc", 0.5, 3), ("eval/val_hard_acc", 0.25, 3),
                                   ("eval/test_smooth_acc", 0.75, 3), ("eval/test_hard_acc", 0.5, 3),
                                   ("eval/test_gap", 0.25, 3), ("eval/test_hard_loss", 2.0, 3)]


def test_monitor_records_under_their_statement_id():
    check = {"kind": "check", "id": "T4", "step": 64, "epoch": 1, "estimate": 2.0, "bound": 7e4,
             "status": "violated", "n_probe": 16, "result": {"id": "T4", "local_bound": 1.5, "bound": 7e4}}
    assert scalars(check) == [("T4/estimate", 2.0, 64), ("T4/bound", 7e4, 64), ("T4/local_bound", 1.5, 64),
                              ("T4/status", STATUSES.index("violated"), 64)]
    top = {**check, "local_bound": 3.0}  # a local bound at the top of the record is the record's own
    assert ("T4/local_bound", 3.0, 64) in scalars(top)
    t3_hard = {"kind": "check", "id": "T3", "step": 4, "estimate": 0.5, "bound": None, "status": "not applicable",
               "result": {"local_bound": None}}
    assert scalars(t3_hard) == [("T3/estimate", 0.5, 4), ("T3/status", STATUSES.index("not applicable"), 4)]
    probe = {"kind": "probe", "id": "probe", "step": 0, "loss": 2.25, "grad_norm_sq": 0.125, "sigma2": 4.5,
             "estimate": 0.125, "bound": None, "status": "not applicable"}
    assert scalars(probe) == [("probe/estimate", 0.125, 0), ("probe/status", 3, 0), ("probe/loss", 2.25, 0),
                              ("probe/sigma2", 4.5, 0)]


@pytest.mark.parametrize("record", [
    {"kind": "monitor", "event": "start", "step": 0, "epoch": 0, "preset": "default"},
    {"kind": "monitor_error", "id": "T4", "step": 8, "error": "ValueError: x"},
    {"kind": "extend", "step": 11, "epoch": 1, "from_epochs": 1, "to_epochs": 2},
    {"kind": "check", "step": 3, "estimate": 1.0},  # no statement ID: nowhere to put it
    {"kind": "check", "id": "A4", "step": 3, "estimate": True, "bound": "1", "status": "fine"},  # no number in it
    {"kind": "train", "loss": 1.0},  # no step
])
def test_records_without_scalars(record):
    assert scalars(record) == []


def test_status_codes_are_the_contracts_words_documented():
    """Each word of runfolder.STATUSES has its own code, and the README and --help say which."""
    assert list(STATUS_CODES) == list(STATUSES) and sorted(STATUS_CODES.values()) == list(range(len(STATUSES)))
    section = README.read_text(encoding="utf-8").split("## TensorBoard", 1)[1].split("\n## ", 1)[0]
    for word, code in STATUS_CODES.items():
        assert re.search(rf"\b{code} {word}\b", section), (code, word)
        assert f"{code} {word}" in tensorboard_help()
    assert TENSORBOARD_INSTALL in section and TENSORBOARD_INSTALL in tensorboard_help()


class _Sink:
    def __init__(self, fail_close: bool = False) -> None:
        self.opened, self.written, self.closed, self.fail_close = None, [], False, fail_close

    def open(self, records):
        self.opened = list(records)

    def write(self, record):
        self.written.append(record)

    def close(self):
        self.closed = True
        if self.fail_close:
            raise OSError(28, "No space left on device", "tb")


def test_metrics_log_hands_its_sinks_what_the_file_holds(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = MetricsLog(path)
    first.log({"kind": "train", "step": 10, "loss": 1.0})
    first.close()
    failing, sink = _Sink(fail_close=True), _Sink()
    log = MetricsLog(path, [failing, sink])
    assert sink.opened == [{"kind": "train", "step": 10, "loss": 1.0}]  # a resumed run's log, as held
    log.log({"kind": "eval", "step": 20, "epoch": 2, "test_gap": math.nan, "pair": (1, 2)})
    assert sink.written == [{"kind": "eval", "step": 20, "epoch": 2, "test_gap": None, "pair": [1, 2]}]  # as read back
    with pytest.raises(OSError, match="No space"):
        log.close()
    assert failing.closed and sink.closed  # every sink closed though one failed
