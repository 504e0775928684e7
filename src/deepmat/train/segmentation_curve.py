"""A segmentation network's learning curve in the metrics people report.

The trainer picks the best epoch by the validation loss on tiles; what a user wants to see
is how the whole-image validation scores (mIoU, pooled IoU, pixel accuracy) grow with
training. :class:`ValidationCurve` scores the validation micrographs every few epochs and
keeps the points in the checkpoints, so a resumed run continues its curve.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback
from rich.console import Console

CURVE_METRICS = ("miou", "pooled_iou", "pixel_accuracy")


class ValidationCurve(Callback):
    """``model.evaluate(val)``'s :data:`CURVE_METRICS` at ``points`` evenly spaced epochs
    (the last included; 0: never), with the epoch and the optimiser steps taken so far."""

    def __init__(self, model, val: list, points: int) -> None:
        self.model, self.val, self.n_points = model, val, points
        self.points: list[dict] = []

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state_dict: dict) -> None:
        self.points = list(state_dict.get("points", []))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        every = -(-trainer.max_epochs // self.n_points) if self.n_points else 0
        if not every or (epoch % every and epoch != trainer.max_epochs):
            return
        net = self.model.net
        training = net.training
        scores = self.model.evaluate(self.val)
        net.train(training)
        point = {"epoch": epoch, "step": int(trainer.global_step)}
        point |= {key: float(scores[key]) for key in CURVE_METRICS}
        self.points = [p for p in self.points if p["epoch"] < epoch] + [point]
        if trainer.is_global_zero:
            shown = "  ".join(f"{k} {point[k]:.4f}" for k in CURVE_METRICS)
            Console(stderr=True).print(f"epoch {epoch:>4}  whole validation images: {shown}")
