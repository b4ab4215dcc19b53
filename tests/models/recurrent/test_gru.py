"""The GRU baseline: shapes against its definitions, and it learns to copy a fixed batch."""

from __future__ import annotations

import pytest
import torch

from miprometheus.models.recurrent.gru import GRU
from miprometheus.problems.seq_to_seq.algorithmic.serial_recall import SerialRecall


def test_gru_shapes_match_definitions():
    model = GRU(GRU.Params(input_item_size=10, output_item_size=8, hidden_size=16, num_layers=2))
    out = model({"sequences": torch.zeros(3, 7, 10)})
    assert out.shape == (3, 7, 8) and out.dtype == torch.float32
    assert model.output_definitions["predictions"].matches_value(out) is None


@pytest.mark.slow
def test_gru_learns_to_copy_a_fixed_batch():
    torch.manual_seed(0)
    problem = SerialRecall(SerialRecall.Params(batch_size=16, min_sequence_length=4, max_sequence_length=4))
    problem.seed(0)
    batch = problem.generate_batch(16)
    model = GRU(GRU.Params(input_item_size=10, output_item_size=8, hidden_size=64))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(300):
        optimizer.zero_grad()
        loss = problem.loss(batch, model(batch))
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
    assert first > 0.6 and loss.item() < 0.05
    assert problem.statistics(batch, model(batch))["acc"].value == 1.0
