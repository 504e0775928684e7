"""Files in a saved-model directory: network weights as ``weights.safetensors`` (no pickle)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepmat.errors import ModelFormatError

WEIGHTS = "weights.safetensors"


def require_file(path: Path, name: str) -> Path:
    """``path/name``, or a ModelFormatError naming the missing file."""
    if not (path / name).exists():
        raise ModelFormatError(f"{path}: missing {name}")
    return path / name


def save_weights(net: nn.Module, path: Path) -> None:
    """Write ``net``'s state into ``path/weights.safetensors``."""
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path / WEIGHTS)


def load_weights(net: nn.Module, path: Path) -> None:
    """Load ``path/weights.safetensors`` into ``net`` (in float32 whatever the stored
    precision) and put it in evaluation mode."""
    file = require_file(path, WEIGHTS)
    reference = net.state_dict()
    state = {
        k: v.to(reference[k].dtype) if k in reference else v for k, v in load_file(file).items()
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFormatError(
            f"{file}: weights do not fit the card's architecture ({exc})"
        ) from None
    net.eval()


def restore_network(model, path: Path, card: dict) -> None:
    """Weights, target scaling and training record of a saved network estimator."""
    from deepmat.train.config import TargetScaler

    load_weights(model.net, path)
    model.scaler = TargetScaler.from_dict(card["target"])
    model.restore_record(card)


def transfer_weights(net: nn.Module, source: nn.Module, label: str) -> None:
    """Copy ``source``'s parameters and buffers into ``net``, tensor by tensor (fine-tuning
    starts from them). A tensor of ``net`` that is longer along its first axis only, an
    output layer given a σ output, takes ``source``'s rows and zeros for the new ones, so
    that the network starts from the same predictions with one constant ln σ = 0 (σ the
    targets' standard deviation) and the loss first weighs every record alike; any other
    difference is an error naming the tensor."""
    own, theirs = net.state_dict(), source.state_dict()
    unmatched = sorted(set(own) ^ set(theirs))
    if unmatched:
        raise ModelFormatError(
            f"{label}: the networks differ in {', '.join(unmatched[:5])}; start from a model "
            "of the same architecture"
        )
    with torch.no_grad():
        for name, value in theirs.items():
            target = own[name]
            if target.shape == value.shape:
                target.copy_(value)
            elif target.shape[1:] == value.shape[1:] and target.shape[0] > value.shape[0]:
                target.zero_()[: value.shape[0]].copy_(value)
            else:
                raise ModelFormatError(
                    f"{label}: {name} is {tuple(value.shape)} there and {tuple(target.shape)} "
                    "here; start from a model of the same architecture"
                )


def layers(net: nn.Module) -> list[nn.Module]:
    """The network's layers in order: the modules that hold parameters of their own."""
    return [m for m in net.modules() if any(True for _ in m.parameters(recurse=False))]


def freeze_leading(net: nn.Module, count: int, label: str) -> None:
    """Keep the first ``count`` layers (see :func:`layers`) as they are: their parameters get
    no gradient, so fine-tuning trains only the layers after them."""
    stack = layers(net)
    if count >= len(stack):
        raise ModelFormatError(
            f"{label}: cannot freeze {count} layers of a network of {len(stack)}; leave at "
            "least the last one to train"
        )
    for layer in stack[:count]:
        layer.requires_grad_(False)
