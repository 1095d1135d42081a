"""The training loop's callback protocol (DESIGN.md: the loop takes callbacks; the monitor is one).

A :class:`Callback` is told when training starts, after every optimisation step, at the
end of every epoch (after evaluation, before the epoch's checkpoint is written) and when
training ends. It sees the live :class:`sast.train.Run` (model, optimizer, data, log,
counters). Its :meth:`~Callback.state_dict` is saved with each checkpoint and handed back
on resume, so a resumed run logs what the uninterrupted one would. Higher layers
(``checks.monitor``) implement it; ``sast`` never imports them.

A hook stops training by raising :class:`StopTraining`: the loop writes the checkpoint of
the current state first (``sast.train.loop``), then re-raises it to the caller; the
command line exits with its ``exit_code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runfolder import EXIT_VIOLATED

if TYPE_CHECKING:
    from sast.sam import StepStats
    from sast.train import Run


class StopTraining(Exception):
    """Raised by a callback's hook to end training now, for ``reason`` (one line).

    The training loop catches it, writes ckpt.pt with the state reached (after a step:
    that step's weights, resumable from there) and raises it again; ``python -m
    sast.train`` then prints the reason and exits with ``exit_code`` (default
    ``runfolder.EXIT_VIOLATED``, 1: the live monitor stops on a violated bound).
    """

    def __init__(self, reason: str, exit_code: int = EXIT_VIOLATED) -> None:
        super().__init__(reason)
        self.exit_code = exit_code

    def __reduce__(self):  # pickles with its exit code (torchrun hands it to the other processes)
        return (type(self), (str(self), self.exit_code))


class Callback:
    """Hooks into the training loop. Every method is optional (the defaults do nothing)."""

    def on_train_start(self, run: "Run") -> None: ...

    def on_step_end(self, run: "Run", stats: "StepStats") -> None: ...

    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None: ...

    def on_train_end(self, run: "Run") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists, dicts) saved with every checkpoint, after ``on_epoch_end``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """On ``--resume``: the state this callback's place in the list saved with the checkpoint.

        It may come from another callback (the list changed between runs): check it is your own.
        """
