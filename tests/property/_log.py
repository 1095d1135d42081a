"""The property suite's ratio log: the largest estimate / bound per statement over the session.

One :class:`checks.testing.RatioLog` for the whole session; ``conftest.py`` prints it in the
terminal summary and writes it to test-artifacts/.
"""

from __future__ import annotations

from checks.testing import RatioLog

LOG = RatioLog()
