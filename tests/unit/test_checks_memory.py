"""checks._memory: --max-memory's sizes, the chunk share and the refusal of a probe whose Hessian graph cannot fit."""

from __future__ import annotations

import pytest

from checks import _memory
from checks._common import CheckInputError
from checks.local import GRAM_CHUNK_BYTES
from sast.model import SNN, SNNConfig


@pytest.mark.parametrize("text, want", [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GB", int(1.5 * 2**30)),
                                        ("1048576", 2**20), ("64 kib", 64 * 2**10)])
def test_sizes(text: str, want: int) -> None:
    assert _memory.parse_size(text) == want


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "2X", "1..5G"])
def test_bad_sizes_are_one_line(text: str) -> None:
    with pytest.raises(CheckInputError, match="--max-memory: expected a size") as err:
        _memory.parse_size(text)
    assert "\n" not in str(err.value)


def test_chunks_shrink_with_the_budget_and_never_grow_past_the_default() -> None:
    assert _memory.chunk_budget(GRAM_CHUNK_BYTES) == GRAM_CHUNK_BYTES
    with _memory.memory_budget(800 * 2**20):
        assert _memory.chunk_budget(GRAM_CHUNK_BYTES) == 100 * 2**20
    with _memory.memory_budget(64 * 2**30):
        assert _memory.chunk_budget(GRAM_CHUNK_BYTES) == GRAM_CHUNK_BYTES
    with _memory.memory_budget(1):
        assert _memory.chunk_budget(GRAM_CHUNK_BYTES) == _memory.MIN_CHUNK_BYTES
    assert _memory.chunk_budget(GRAM_CHUNK_BYTES) == GRAM_CHUNK_BYTES  # restored after the block


def test_a_probe_whose_hessian_graph_cannot_fit_is_refused_naming_a_batch_that_does() -> None:
    model = SNN(SNNConfig(input_shape=(2, 8, 8), layers=["conv:4:3:2", "dense:8"], T=5, num_classes=3))
    need = _memory.hvp_graph_bytes(model, 64)
    assert need == _memory.HVP_BYTES_PER_STATE * 5 * (4 * 4 * 4 + 8 + 2 * 8 * 8) * 64
    _memory.check_fits(model, 64, need, "T4")  # exactly fits
    with pytest.raises(CheckInputError) as err:
        _memory.check_fits(model, 64, need // 4, "T4")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("T4: ") and "--batch 16 or less" in msg and "--max-memory" in msg
    _memory.check_fits(model, 16, need // 4, "T4")  # and that batch does fit
