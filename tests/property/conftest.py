"""Session summary of the property tests: the largest estimate / bound ratio seen per statement.

Printed in pytest's terminal summary and written to test-artifacts/property-ratios.json.
"""

from __future__ import annotations

import json
import os

import _nets

ARTIFACT = os.path.join("test-artifacts", "property-ratios.json")


def pytest_terminal_summary(terminalreporter) -> None:
    if not _nets.RATIOS and not _nets.COUNTS:
        return
    tr = terminalreporter
    tr.section("largest estimate / bound per statement (tests/property)")
    for key in sorted(_nets.RATIOS):
        entry = _nets.RATIOS[key]
        tr.write_line(f"{key:<45} max {entry['max']:.4g}  over {entry['n']} values")
    for key in sorted(_nets.COUNTS):
        tr.write_line(f"{key:<45} {_nets.COUNTS[key]} examples")
    os.makedirs(os.path.dirname(ARTIFACT), exist_ok=True)
    with open(ARTIFACT, "w") as fh:
        json.dump({"ratios": _nets.RATIOS, "counts": _nets.COUNTS}, fh, indent=1)
    tr.write_line(f"written to {ARTIFACT}")
