"""Shared setup for the loss tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # These tensors are tiny: on the 2-core, shared CI machines intra-op threads only spin and
    # contend (a 200x16 matmul went from 0.1 ms to 15 ms). Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
