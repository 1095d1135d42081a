"""Session summary of the property tests: the largest estimate / bound ratio seen per statement.

Printed in pytest's terminal summary and written to test-artifacts/property-ratios.json.
"""

from __future__ import annotations

import json
import os

from _log import LOG

ARTIFACT = os.path.join("test-artifacts", "property-ratios.json")


def pytest_terminal_summary(terminalreporter) -> None:
    if not LOG:
        return
    tr = terminalreporter
    tr.section("largest estimate / bound per statement (tests/property)")
    for line in LOG.lines():
        tr.write_line(line)
    os.makedirs(os.path.dirname(ARTIFACT), exist_ok=True)
    with open(ARTIFACT, "w") as fh:
        json.dump(LOG.to_json(), fh, indent=1)
    tr.write_line(f"written to {ARTIFACT}")
