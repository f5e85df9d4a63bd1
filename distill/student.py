"""EfficientViT-style student image encoders, in a typed registry.

Convolutional stages downsample early (the teacher's TinyViT runs its first stage on all 256x256 positions;
this is where the student saves most), the two late stages add multi-scale ReLU linear attention
(EfficientViT's LiteMLA), and a top-down neck fuses the stages back up to the teacher's 64x64 grid and
channel count, so the teacher's prompt encoder and mask decoder take the student's embedding unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StudentConfig:
    widths: tuple[int, int, int, int, int]  # stem (1/2), stage 1 (1/4), 2 (1/8), 3 (1/16), 4 (1/32)
    depths: tuple[int, int, int, int, int]  # blocks per stage; stages 3 and 4 use EfficientViT blocks
    neck_width: int  # channels of the fused 1/16 features
    head_width: int  # channels of the 1/4 (64x64) refinement before the output projection
    head_depth: int
    refiner_width: int = 0  # 0: none; else a residual high-resolution refiner of this width (HighResRefiner)
    expand_ratio: int = 4
    attention_dim: int = 16  # per-head dimension of the linear attention
    out_channels: int = 256
    input_size: int = 256

    def as_dict(self) -> dict:
        return asdict(self)


STUDENTS: dict[str, StudentConfig] = {
    "effvit-s": StudentConfig(widths=(16, 32, 64, 128, 256), depths=(1, 1, 2, 2, 2), neck_width=128, head_width=64, head_depth=1),
    "effvit-s-hr": StudentConfig(widths=(16, 32, 64, 128, 256), depths=(1, 1, 2, 2, 2), neck_width=128, head_width=64,
                                 head_depth=1, refiner_width=96),
    "effvit-m": StudentConfig(widths=(24, 48, 96, 192, 384), depths=(1, 2, 3, 3, 3), neck_width=192, head_width=96, head_depth=2),
}


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.Hardswish())
    return nn.Sequential(*layers)


class DSConv(nn.Module):
    """Depthwise-separable convolution, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand, 3x3 depthwise, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            conv_bn(cin, hidden, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class LinearAttentionNorm(nn.Module):
    """The normalising division of ReLU linear attention, always in fp32: under autocast or INT8 its small
    denominators lose the precision the attention depends on. Its own module so export and quantization
    can find (and exclude) it by name."""

    def forward(self, numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        return numerator.float() / (denominator.float() + 1e-6)


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention (EfficientViT): q, k, v from a 1x1 conv, plus a 5x5 depthwise
    aggregated copy as a second scale; attention cost is linear in the number of positions."""

    def __init__(self, channels: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.aggregate = nn.Sequential(
            nn.Conv2d(3 * channels, 3 * channels, 5, padding=2, groups=3 * channels, bias=False),
            nn.Conv2d(3 * channels, 3 * channels, 1, groups=3 * channels // head_dim, bias=False),
        )
        self.norm = LinearAttentionNorm()
        self.project = conv_bn(2 * channels, channels, 1, act=False)

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = qkv.shape
        qkv = qkv.reshape(batch, -1, 3 * self.head_dim, height * width)
        q, k, v = qkv.split(self.head_dim, dim=2)
        q, k = F.relu(q), F.relu(k)
        v = F.pad(v, (0, 0, 0, 1), value=1.0)  # the extra row of ones yields the normaliser
        kv = torch.matmul(v, k.transpose(-1, -2))
        out = torch.matmul(kv, q)
        out = self.norm(out[:, :, :-1], out[:, :, -1:]).to(qkv.dtype)
        return out.reshape(batch, -1, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        multi_scale = torch.cat([self.attend(qkv), self.attend(self.aggregate(qkv))], dim=1)
        return self.project(multi_scale)


class EfficientViTBlock(nn.Module):
    def __init__(self, channels: int, head_dim: int, expand: int) -> None:
        super().__init__()
        self.context = LiteMLA(channels, head_dim)
        self.local = MBConv(channels, channels, expand=expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local(x + self.context(x))


class HighResRefiner(nn.Module):
    """A correction added to the embedding, computed at the 64x64 grid from the image itself, stage 1 and the
    head: effvit-s reaches 64x64 through one 32-channel block, and its masks disagree with the teacher's most on
    small objects (a 10-pixel organ is 2-3 embedding cells). Its last convolution starts at zero, so a student
    with a refiner starts as the student without one, and training the refiner alone measures what the extra
    high-resolution capacity adds."""

    def __init__(self, stage1_width: int, head_width: int, width: int, out_channels: int) -> None:
        super().__init__()
        half = width // 2
        self.image = nn.Sequential(conv_bn(3, half, 3, 2), conv_bn(half, half, 3, 2))
        self.merge = conv_bn(half + stage1_width + head_width, width, 1)
        self.blocks = nn.Sequential(MBConv(width, width, expand=2), MBConv(width, width, expand=2))
        self.output = nn.Conv2d(width, out_channels, 1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, image: torch.Tensor, stage1: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return self.output(self.blocks(self.merge(torch.cat([self.image(image), stage1, head], dim=1))))


class StudentEncoder(nn.Module):
    """(B, 3, 256, 256) in [0, 1] -> (B, 256, 64, 64), the teacher's embedding layout."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        w, d, e = config.widths, config.depths, config.expand_ratio
        self.stem = nn.Sequential(conv_bn(3, w[0], 3, 2), *[DSConv(w[0], w[0]) for _ in range(d[0])])
        self.stage1 = nn.Sequential(MBConv(w[0], w[1], 2, e), *[MBConv(w[1], w[1], 1, e) for _ in range(d[1] - 1)])
        self.stage2 = nn.Sequential(MBConv(w[1], w[2], 2, e), *[MBConv(w[2], w[2], 1, e) for _ in range(d[2] - 1)])
        self.stage3 = nn.Sequential(MBConv(w[2], w[3], 2, e), *[EfficientViTBlock(w[3], config.attention_dim, e) for _ in range(d[3])])
        self.stage4 = nn.Sequential(MBConv(w[3], w[4], 2, e), *[EfficientViTBlock(w[4], config.attention_dim, e) for _ in range(d[4])])
        n, h = config.neck_width, config.head_width
        self.lateral4, self.lateral3 = conv_bn(w[4], n, 1, act=False), conv_bn(w[3], n, 1, act=False)
        self.fuse16 = nn.Sequential(MBConv(n, n, expand=2), EfficientViTBlock(n, config.attention_dim, 2))
        self.lateral2 = conv_bn(w[2], n, 1, act=False)
        self.fuse32 = MBConv(n, h, expand=2)
        self.lateral1 = conv_bn(w[1], h, 1, act=False)
        self.fuse64 = nn.Sequential(*[MBConv(h, h, expand=2) for _ in range(config.head_depth)])
        self.output = nn.Conv2d(h, config.out_channels, 1)
        nn.init.normal_(self.output.weight, std=0.01)  # start near the teacher's small embedding values (std ~0.1)
        nn.init.zeros_(self.output.bias)
        self.refiner = HighResRefiner(w[1], h, config.refiner_width, config.out_channels) if config.refiner_width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.stage1(self.stem(x))
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        f4 = self.stage4(f3)
        p16 = self.fuse16(self.lateral3(f3) + F.interpolate(self.lateral4(f4), scale_factor=2.0, mode="bilinear"))
        p32 = self.fuse32(self.lateral2(f2) + F.interpolate(p16, scale_factor=2.0, mode="bilinear"))
        p64 = self.fuse64(self.lateral1(f1) + F.interpolate(p32, scale_factor=2.0, mode="bilinear"))
        if self.refiner is None:
            return self.output(p64)
        return self.output(p64) + self.refiner(x, f1, p64)


def build_student(name: str, out_channels: int = 256) -> StudentEncoder:
    """A registered student whose embedding has the teacher's channel count (256 SAM-style, 768 IMIS-Net)."""
    if name not in STUDENTS:
        raise ValueError(f"unknown student {name!r}; choose one of {', '.join(sorted(STUDENTS))}")
    return StudentEncoder(replace(STUDENTS[name], out_channels=out_channels))


def count_gflops(model: nn.Module, input_size: int = 256) -> float:
    """Forward GFLOPs for one image (2 x multiply-accumulates of convolutions and matmuls, as torch counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, input_size, input_size))
    return counter.get_total_flops() / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_student(run: Path) -> tuple[nn.Module, dict]:
    """The trained student from a run folder (weights only; no pickle)."""
    config = json.loads((run / "config.json").read_text())
    student = build_student(config["student"], out_channels=config.get("out_channels", 256))
    student.load_state_dict(torch.load(run / "student.pt", map_location="cpu", weights_only=True))
    return student.eval(), config
