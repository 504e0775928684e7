"""Train aviary's Roost (``aviary-models`` from PyPI) for a wall-clock budget.

Runs inside the peer's own environment (never deepmat's), with aviary's own data
pipeline, model, loss and optimiser at the settings of its Roost example (AdamW 3e-4,
weight decay 1e-6, batch 128, robust L1 loss with a heteroscedastic head). Epochs run
until the next one would overrun the budget; then the validation compositions are
predicted and written, with the timings, to ``--out`` as JSON.

    PEER_PYTHON aviary_roost.py --train train.csv --val val.csv --budget 600 --out r.json
"""

import argparse
import json
import time

import pandas as pd
import torch
from aviary.roost.data import CompositionData, collate_batch
from aviary.roost.model import Roost
from aviary.utils import init_normalizers, initialize_losses, initialize_optim
from torch.utils.data import DataLoader

TARGET = "target"


def loader(frame: pd.DataFrame, shuffle: bool, batch_size: int) -> DataLoader:
    data = CompositionData(frame, task_dict={TARGET: "regression"})
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--train", required=True, help="CSV with columns material_id, composition, target"
    )
    p.add_argument("--val", required=True)
    p.add_argument("--budget", type=float, required=True, help="training seconds")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train, val = pd.read_csv(args.train), pd.read_csv(args.val)
    train_loader = loader(train, shuffle=True, batch_size=128)
    model = Roost(robust=True, n_targets=[1], task_dict={TARGET: "regression"}, device="cpu")
    optimizer, scheduler = initialize_optim(
        model, optim="AdamW", learning_rate=3e-4, weight_decay=1e-6, momentum=0.9, device="cpu"
    )
    losses = initialize_losses(model.task_dict, {TARGET: "L1"}, robust=True)
    normalizers = init_normalizers(model.task_dict, "cpu")
    normalizers[TARGET].fit(torch.tensor(train[TARGET].to_numpy(), dtype=torch.float32))

    start, epochs, last = time.perf_counter(), 0, 0.0
    while time.perf_counter() - start + last <= args.budget:
        began = time.perf_counter()
        model.fit(
            train_loader,
            None,
            optimizer,
            scheduler,
            epochs=1,
            loss_dict=losses,
            normalizer_dict=normalizers,
            model_name="aviary-roost",
            run_id=0,
            checkpoint=False,
            verbose=False,
        )
        last, epochs = time.perf_counter() - began, epochs + 1
    train_seconds = time.perf_counter() - start

    began = time.perf_counter()
    _, (output,), _ = model.predict(loader(val, shuffle=False, batch_size=1024))
    mean = normalizers[TARGET].denorm(output[:, 0].detach()).numpy()
    predict_seconds = time.perf_counter() - began
    result = {
        "predictions": mean.tolist(),
        "train_seconds": train_seconds,
        "epochs": epochs,
        "compositions_per_second": epochs * len(train) / train_seconds if epochs else 0.0,
        "predict_seconds": predict_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": args.threads,
        "settings": "aviary Roost example: AdamW lr 3e-4, wd 1e-6, batch 128, robust L1",
    }
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
