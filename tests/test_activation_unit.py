"""The activation units answer every code from a table built by their own ROM datapath."""

import pytest
import torch

from hw.activation_unit import build_activation_unit
from hw.config import ActivationUnitConfig


@pytest.mark.parametrize("kind,size", [("lut", 2048), ("pwl", 64), ("pwl", 16)])
@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
@pytest.mark.parametrize("rounding", ["nearest", "floor", "nearest_even", "zero"])
def test_tabulated_unit_equals_the_rom_datapath_on_every_code(kind, size, function, rounding):
    cfg = ActivationUnitConfig(kind=kind, **({"entries": size} if kind == "lut"
                                             else {"segments": size}))
    unit = build_activation_unit(function, cfg, 12, rounding)
    codes = torch.arange(unit.lo, unit.lo + (1 << 12))
    shuffled = codes[torch.randperm(codes.numel(), generator=torch.Generator().manual_seed(0))]
    assert torch.equal(unit(shuffled), unit.rom_datapath(shuffled))
    assert torch.equal(unit(codes.reshape(64, 64)), unit.rom_datapath(codes).reshape(64, 64))
