"""Small PyTorch models for tests/test_import.py, each showing one thing `archspec import` reads
(or refuses). A file target: `archspec import tests/import_models.py:Units`."""
from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class Functional(nn.Module):
    """Functional calls and methods that are catalog ops, merges and splits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.gate = nn.Conv2d(16, 16, 1)
        self.layer_scale = nn.Parameter(torch.full((16, 1, 1), 0.5))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([self.left(a), b], dim=1)  # ShuffleNet's split
        x = x + x * torch.sigmoid(self.gate(x))  # a gate inside a residual
        x = self.layer_scale * x * 0.5
        x = F.dropout(x, 0.1, training=self.training)
        x = x.mean([2, 3])
        return self.fc(x)


class Unit(nn.Module):
    def __init__(self, in_channels: int, out: int, stride: int = 1, project: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out, eps=1e-3)
        self.proj = nn.Conv2d(in_channels, out, 1, stride=stride, bias=False) if project else None

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return F.relu(self.bn(self.conv(x)) + shortcut)


class Units(nn.Module):
    """One class, instances with other numbers and with or without a module: one block."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.stage1 = nn.Sequential(Unit(width, width), Unit(width, width), Unit(width, width))
        self.stage2 = nn.Sequential(Unit(width, 2 * width, stride=2, project=True), Unit(2 * width, 2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stage2(self.stage1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


Outputs = namedtuple("Outputs", ["logits", "aux_logits"])


class Head(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1)
        return self.fc(torch.flatten(x, 1))


class WithAux(nn.Module):
    """An auxiliary classifier run in training only, returned in a namedtuple (Inception v3)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.aux = Head(8, num_classes)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.stage1(x)
        aux = self.aux(x) if self.training else None
        x = F.relu(self.conv2(x))
        x = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return Outputs(x, aux) if self.training else x


# --- what cannot be imported ------------------------------------------------------------------------

class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor's value
            x = self.conv(x)
        return x


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = torch.transpose(self.conv(x), 2, 3)  # not in the op catalog
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.stem = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(self.conv(self.stem(x)))  # one module, its weights used twice


class Dense(nn.Module):
    """DenseNet's pattern: the input is concatenated again after the merge that follows it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(7, 4, 3, padding=1)

    def forward(self, x):
        y = torch.cat([x, self.a(x)], 1)
        return torch.cat([x, y, self.b(y)], 1)


class Picked(nn.Module):
    """A module given a list of tensors that reads one of them: not their concatenation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, xs):
        return self.conv(xs[0])


class GivenList(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.pick = Picked()

    def forward(self, x):
        x = self.stem(x)
        return self.pick([x])


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.spare = nn.Linear(4, 4)  # registered, never called: its keys would be lost

    def forward(self, x):
        return self.conv(x)


class Partly(nn.Module):
    """Importable but for one call: --partial writes the rest."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = torch.roll(F.relu(self.conv(x)), 1, dims=2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Rolled(nn.Module):
    """Three blocks refused for one reason at one line: one error, "and 2 more modules like it"."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Partly(), nn.Linear(10, 3, bias=False), nn.Unflatten(1, (3, 1, 1)), Partly(),
                                    nn.Linear(10, 3, bias=False), nn.Unflatten(1, (3, 1, 1)), Partly())

    def forward(self, x):
        return self.blocks(x)


def units(width: int = 8, num_classes: int = 10) -> Units:
    """A builder function, as torchvision's are: `import_models.py:units --arg width=4`."""
    return Units(num_classes, width)


class Stacked(nn.Module):
    """Blocks in an nn.ModuleList, called in a loop: the spec's nn.Sequential (same keys)."""

    def __init__(self, depth: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(Unit(8, 8) for _ in range(depth))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))
