"""`edgenas train`: train one architecture on a dataset and report its accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nas.datasets.names import DATASETS, DENSE_DATASETS
from nas.train_config import TrainConfig

if TYPE_CHECKING:
    from nas.datasets import Dataset
    from search_spaces import ArchConfig


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(DATASETS + DENSE_DATASETS)
    parser.add_argument("--dataset", default="digits", help=f"one of {names} (default digits)")
    parser.add_argument(
        "--data-dir", default=None, help="folder or file of the dataset (fashion-mnist, folder, npz, coco, masks)"
    )
    parser.add_argument("--train-limit", type=int, default=None, help="use at most this many training images")


def load_arch_and_dataset(args: argparse.Namespace) -> tuple[ArchConfig, Dataset]:
    """The ``--arch`` file and the dataset of :func:`add_dataset_arguments` at its resolution, split by ``--seed``."""
    from nas.datasets import load_dataset
    from search_spaces.arch_file import load_arch

    arch = load_arch(args.arch)  # an ARCH file, or a one-point space
    dataset = load_dataset(
        args.dataset, resolution=arch.resolution, seed=args.seed, data_dir=args.data_dir, limit=args.train_limit
    )
    return arch, dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one architecture (ArchConfig YAML) on a dataset")
    train.add_argument("--arch", required=True, help="ArchConfig YAML or JSON file")
    add_dataset_arguments(train)
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="training epochs")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    train.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    train.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak learning rate (SGD, cosine)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the batches")
    train.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu or cuda")
    train.add_argument("--save", type=Path, default=None, help="write the trained weights (state_dict) here")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from nas.task_metrics import task_metric
    from nas.training import train_arch
    from search_spaces import ArchConfig, count_arch

    config = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
    )
    arch = ArchConfig.load(args.arch)
    if arch.task == "classification":
        arch, dataset = load_arch_and_dataset(args)
        train, metric = train_arch, task_metric(arch.task).label
    else:
        from nas.dense_datasets import load_dense_dataset
        from nas.dense_training import train_dense_arch

        dataset = load_dense_dataset(
            args.dataset,
            resolution=arch.resolution,
            seed=args.seed,
            data_dir=args.data_dir,
            limit=args.train_limit,
            task=arch.task,
        )
        train, metric = train_dense_arch, task_metric(arch.task).label
    counts = count_arch(arch)
    print(f"{arch.arch_id}  {arch.block_string()}")
    print(f"{counts.params:,} params, {counts.macs:,} MACs; {dataset.summary()}")
    model, result = train(arch, dataset, config=config, progress=True)
    for record in result.history:
        print(f"epoch {record.epoch:3d}  loss {record.train_loss:.4f}  val {metric} {record.val_accuracy:.4f}")
    print(f"val {metric} {result.val_accuracy:.4f}, test {metric} {result.test_accuracy:.4f} ({result.seconds:.1f} s)")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.save)
        print(f"weights written to {args.save}")
    return 0
