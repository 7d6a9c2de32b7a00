"""2D U-Net as in SSL4MIS (channels 16-32-64-128-256, BatchNorm, LeakyReLU), split into parts.

IDEAL shares one `Encoder` between two decoders of different design (`Decoder(upsampling=
"transposed")` and `Decoder(upsampling="bilinear")`); a plain `UNet` is encoder + one decoder.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

DEFAULT_CHANNELS = (16, 32, 64, 128, 256)
DEFAULT_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class ByteMaskDropout(nn.Dropout):
    """nn.Dropout whose CPU mask is drawn as random bytes, eight from each 64-bit draw.

    On a CPU, drawing one random float per element is the slowest part of dropout (about 7 % of a
    training step, more than any BatchNorm): the generator is serial. One byte per element is
    eight times fewer draws. The dropout probability is then a multiple of 1/256 (0.05 becomes
    13/256 = 0.0508) and the kept values are scaled by that rounded probability, so the
    expectation is unchanged. Elsewhere (CUDA's fused kernel) and under torch.compile (where the
    64-bit draw would break the graph) it is nn.Dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cut = round(self.p * 256)
        if not self.training or x.device.type != "cpu" or cut >= 256 or torch.compiler.is_compiling() or not (
            x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        ):
            return super().forward(x)
        if cut == 0:
            return x
        draws = torch.empty((x.numel() + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        noise = draws.view(torch.uint8)[: x.numel()].as_strided(x.shape, x.stride())  # x's memory order
        keep = torch.where(noise >= cut, 256 / (256 - cut), 0.0).to(x.dtype)
        return x * keep


class ConvBlock(nn.Sequential):
    """conv3x3-BN-LeakyReLU, dropout, conv3x3-BN-LeakyReLU.

    LeakyReLU works in place on the BatchNorm output (which nothing else reads): one full-resolution
    tensor fewer to allocate and write per activation, about 8 % of a CPU training step.
    """

    def __init__(self, c_in: int, c_out: int, dropout: float):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(inplace=True),
            ByteMaskDropout(dropout),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(inplace=True),
        )


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each ConvBlock's BatchNorm into the convolution before it, for inference only.

    In eval mode BatchNorm is a per-channel affine map that the convolution's weights can absorb:
    one full-resolution pass fewer per convolution. The model cannot be trained afterwards (the
    batch statistics are gone), so only `load_run` does this.
    """
    model.eval()
    for block in model.modules():
        if isinstance(block, ConvBlock):
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    block[i] = fuse_conv_bn_eval(block[i], block[i + 1])
                    block[i + 1] = nn.Identity()
    return model


class Encoder(nn.Module):
    """Returns the feature map of every level, shallow to deep: [C0 x H], ..., [C4 x H/16]."""

    def __init__(self, in_channels: int = 1, channels=DEFAULT_CHANNELS, dropout=DEFAULT_DROPOUT):
        super().__init__()
        if len(channels) != len(dropout):
            raise ValueError("channels and dropout need one entry per level")
        self.channels = tuple(channels)
        blocks = [ConvBlock(in_channels, channels[0], dropout[0])]
        for i in range(1, len(channels)):
            blocks.append(nn.Sequential(nn.MaxPool2d(2), ConvBlock(channels[i - 1], channels[i], dropout[i])))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class ConvThenUpsample(nn.Sequential):
    """x2 bilinear upsampling and a 1x1 conv, run conv first as SSL4MIS's UpBlock does.

    Both maps are linear and bilinear weights sum to 1 (the bias passes through), so the order
    does not change the result; conv first runs the conv on a quarter of the pixels and upsamples
    c_skip = c_deep / 2 channels instead of c_deep. Kept as Sequential(Upsample, Conv2d) so that
    checkpoints keep their key names.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsample, conv = self
        return upsample(conv(x))


class UpBlock(nn.Module):
    """Upsample the deeper map (transposed conv, or bilinear + 1x1 conv), concat skip, ConvBlock."""

    def __init__(self, c_deep: int, c_skip: int, c_out: int, upsampling: str):
        super().__init__()
        if upsampling == "transposed":
            self.up = nn.ConvTranspose2d(c_deep, c_skip, kernel_size=2, stride=2)
        elif upsampling == "bilinear":
            self.up = ConvThenUpsample(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_deep, c_skip, kernel_size=1),
            )
        else:
            raise ValueError(f"upsampling must be 'transposed' or 'bilinear', got {upsampling!r}")
        self.conv = ConvBlock(2 * c_skip, c_out, 0.0)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


class Decoder(nn.Module):
    """Encoder features -> class logits at input resolution."""

    def __init__(self, num_classes: int, channels=DEFAULT_CHANNELS, upsampling: str = "bilinear"):
        super().__init__()
        ups = []
        for i in range(len(channels) - 1, 0, -1):
            ups.append(UpBlock(channels[i], channels[i - 1], channels[i - 1], upsampling))
        self.ups = nn.ModuleList(ups)
        self.out = nn.Conv2d(channels[0], num_classes, kernel_size=3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for up, skip in zip(self.ups, reversed(features[:-1]), strict=True):
            x = up(x, skip)
        return self.out(x)


class UNet(nn.Module):
    """Encoder + one decoder: the supervised, Mean Teacher and CPS backbone."""

    def __init__(self, num_classes: int, in_channels: int = 1, channels=DEFAULT_CHANNELS,
                 upsampling: str = "bilinear"):
        super().__init__()
        self.encoder = Encoder(in_channels, channels)
        self.decoder = Decoder(num_classes, channels, upsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class FeatureDropout(nn.Module):
    """CCT feature dropout: zero the most activated regions (attention above a random threshold)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        attention = x.mean(dim=1, keepdim=True)
        peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        threshold = peak * torch.empty_like(peak).uniform_(0.7, 0.9)
        return x * (attention < threshold).to(x.dtype)


class FeatureNoise(nn.Module):
    """CCT uniform feature noise: x + x * U(-r, r), one noise map shared across channels."""

    def __init__(self, radius: float = 0.3):
        super().__init__()
        self.radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        noise = torch.empty_like(x[:1]).uniform_(-self.radius, self.radius)
        return x + x * noise


def perturbation(name: str) -> nn.Module:
    """'dropout' | 'noise' | 'none' -> the module applied to each encoder feature of a stream."""
    table = {"dropout": FeatureDropout, "noise": FeatureNoise, "none": nn.Identity}
    if name not in table:
        raise ValueError(f"perturbation must be one of {sorted(table)}, got {name!r}")
    return table[name]()
