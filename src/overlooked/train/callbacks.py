"""Callbacks: the trainer's few named hooks. Schedules such as MemN2N's linear start live here and act on a
model only through its public methods. A callback with state returns it from ``state_dict`` (JSON-able), so
a resumed run continues exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overlooked.train.trainer import Context


def __getattr__(name: str) -> Any:
    """``from overlooked.train.callbacks import Context``: the type the hooks receive (defined with the trainer)."""
    if name == "Context":
        from overlooked.train.trainer import Context

        return Context
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Callback:
    """Base class; override the hooks you need."""

    def on_train_start(self, ctx: Context) -> None:
        """Called once before the first step (also after a resume)."""

    def on_step_end(self, ctx: Context, loss: float) -> None:
        """Called after every optimiser step."""

    def on_eval_end(self, ctx: Context, metrics: dict[str, Any]) -> None:
        """Called after each validation pass with the record it adds to ``metrics.jsonl``: ``val_loss``,
        ``val_accuracy``, and the training window's ``step``, ``epoch``, ``lr``, ``train_loss``,
        ``train_accuracy``, ``examples_per_s`` and ``examples_seen``."""

    def record_fields(self) -> dict[str, Any]:
        """Fields this callback adds to the next ``metrics.jsonl`` record, written with the validation pass
        they describe (called before :meth:`on_eval_end`, so they tell how that pass was scored). None by
        default; MemN2N's linear start adds ``linear_start``."""
        return {}

    def on_train_end(self, ctx: Context, summary: dict[str, Any]) -> None:
        """Called once after the final report, with the run's summary as the trainer made it (the reported
        weights are in ``ctx.model``; the run's folder writes the summary after this returns)."""

    def on_epoch_end(self, ctx: Context) -> None:
        """Called after the last step of each full pass over the training split, before that step's
        validation pass and checkpoint (so both include what the callback changes)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def restore_model(self, model: Any) -> None:
        """Put ``model`` in the mode this callback's (loaded) state implies, for a checkpoint evaluated
        outside training: a callback that changes how the model computes (MemN2N's linear start removes
        its softmaxes) must override it, or ``evaluate``/``explain`` would score another function than
        the one training reported. Called by :func:`overlooked.api.load_run` after the weights load."""
