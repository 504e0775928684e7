"""Models: ``torch.nn.Module``s only; no I/O, no training loops."""

from deepmat.models.mlp import ELEMNET, MLP, Block, MLPSpec

__all__ = ["ELEMNET", "MLP", "Block", "MLPSpec"]
