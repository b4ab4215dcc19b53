"""Shared helpers of the algorithmic task tests: parse a worked-example table."""

from __future__ import annotations

import torch


def parse_example(table: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sequences [1,T,C+D], targets [1,T,D], masks [1,T,1]) of a worked-example table."""
    sequences, targets, masks = [], [], []
    for t, line in enumerate(table.strip().splitlines()):
        inputs, outputs = line.split("||")
        step, control, data = inputs.split("|")
        target, mask, _role = outputs.split("|")
        assert int(step) == t
        sequences.append([float(v) for v in control.split() + data.split()])
        targets.append([float(v) for v in target.split()])
        masks.append([int(mask)])
    return (torch.tensor([sequences]), torch.tensor([targets]), torch.tensor([masks], dtype=torch.uint8))
