"""A small fully-convolutional generator and a PatchGAN discriminator."""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("shuffle", "transpose")


class SepConv(nn.Sequential):
    """Depthwise 3×3 then pointwise 1×1: most of a 3×3 conv's reach at a fraction of its cost."""

    def __init__(self, cin: int, cout: int, stride: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin),
            nn.Conv2d(cin, cout, 1),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(SepConv(c, c), SepConv(c, c, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def _identity_conv(kh: int, kw: int) -> nn.Conv2d:
    """A depthwise RGB filter with replicated borders, initialised to the identity."""
    conv = nn.Conv2d(
        3, 3, (kh, kw), padding=(kh // 2, kw // 2), groups=3, bias=False, padding_mode="replicate"
    )
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, kh // 2, kw // 2] = 1.0
    return conv


class Generator(nn.Module):
    """RGB in [0, 1] (N×3×H×W, H and W multiples of 4) → RGB in [0, 1], same size.

    Works at half and quarter resolution (where the cost is) and writes a full-resolution
    residual, so that 640×480 runs in a few milliseconds on a CPU. Two heads write it:
    ``shuffle`` (nearest ×2 then a 1×1 conv back at half resolution; a 1×1 conv to 12 channels
    and a pixel shuffle) and ``transpose`` (the 1×1 conv before the ×2, the same function at a
    quarter of the cost; a 2×2 stride-2 transposed conv, ONNX Runtime's DepthToSpace being slow):
    the same reach, 4.8 ms apart at 640×480 on one thread.

    With ``skip_kernel`` > 1 the input reaches the output through a learned depthwise
    ``skip_kernel``² filter (edge-replicated borders, initialised to the identity) instead of
    unchanged: a full-resolution linear path that sharpens, which the half-resolution residual
    alone learns poorly (a separable 5×1 · 1×5 one is 2.5 ms cheaper at 640×480 but gave 0.14 dB
    less).

    ``identity_init`` zeroes the residual's last layer: training starts from the identity (the
    skip filter's initial value) and moves away from it only where the loss gains.
    """

    def __init__(
        self,
        c1: int = 16,
        c2: int = 32,
        blocks: int = 3,
        skip_kernel: int = 1,
        head: str = "shuffle",
        identity_init: bool = False,
    ) -> None:
        super().__init__()
        if skip_kernel < 1 or skip_kernel % 2 == 0:
            raise ValueError(f"skip_kernel must be an odd number ≥ 1, not {skip_kernel}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        self.skip: nn.Module = nn.Identity()
        if skip_kernel > 1:
            self.skip = _identity_conv(skip_kernel, skip_kernel)
        self.down1 = nn.Sequential(nn.Conv2d(3, c1, 3, 2, 1), nn.ReLU(inplace=True))
        self.down2 = SepConv(c1, c2, stride=2)
        self.blocks = nn.Sequential(*(ResBlock(c2) for _ in range(blocks)))
        # Modules are made in the order each head was first trained in: the order fixes how the
        # seeded generator initialises them, so the shipped weights come out again bit for bit.
        self.up: nn.Module
        self.refine: nn.Module
        self.to_rgb: nn.Module
        if head == "shuffle":
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c2, c1, 1)
            )
            self.refine = SepConv(c1, c1)
            self.to_rgb = nn.Sequential(nn.Conv2d(c1, 12, 1), nn.PixelShuffle(2))
        else:
            self.up = nn.Sequential(
                nn.Conv2d(c2, c1, 1), nn.Upsample(scale_factor=2.0, mode="nearest")
            )
            self.to_rgb = nn.ConvTranspose2d(c1, 3, 2, stride=2)
            self.refine = SepConv(c1, c1)
        if identity_init:  # the residual starts at zero: the untrained generator changes nothing
            for p in self.to_rgb.parameters():
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        h = self.blocks(self.down2(d1))
        h = self.refine(torch.relu(self.up(h) + d1))
        return torch.clamp(self.skip(x) + self.to_rgb(h), 0.0, 1.0)


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (input, output) pairs → a map of real/fake scores per patch."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(6, c, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * c, 2 * c, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * c, 1, 3, 1, 1),
        )

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(torch.cat([source, image], dim=1))
        return out
