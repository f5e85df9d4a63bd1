"""The click refiner's network (``imis_lite.click_refiner`` says what it is for and how the runtime feeds it).

It works at 128 and 64 pixels of the 256 model frame and reads the image embedding at 64, so a click costs a
fraction of a SAM decoder pass; its output is the clipped previous logits plus a change it draws, the change's
last layer starting at zero, so an untrained refiner gives back the previous answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imis_lite.click_refiner import PRIOR_LIMIT

#: image (3) + previous logits (1) + foreground and background click discs (2) + box (1)
INPUT_CHANNELS = 7
#: channels per GroupNorm group. GroupNorm, not BatchNorm: the two episode kinds differ in their box input, and
#: BatchNorm's running statistics followed whichever kind the last steps drew (docs/experiments.md)
GROUP_CHANNELS = 8


class ClickRefinerNet(nn.Module):
    def __init__(self, width: int = 16, depth_width: int = 48, embedding_width: int = 32,
                 embedding_channels: int = 256) -> None:
        super().__init__()
        self.config = {"width": width, "depth_width": depth_width, "embedding_width": embedding_width,
                       "embedding_channels": embedding_channels}

        def conv(inputs: int, outputs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, padding=dilation, dilation=dilation, bias=False),
                                 nn.GroupNorm(outputs // GROUP_CHANNELS, outputs), nn.ReLU(inplace=True))

        self.down = nn.Sequential(conv(INPUT_CHANNELS, width, stride=2), conv(width, width))  # 128
        self.down_again = conv(width, 32, stride=2)  # 64
        self.project = nn.Sequential(nn.Conv2d(embedding_channels, embedding_width, 1), nn.ReLU(inplace=True))
        self.context = nn.Sequential(conv(32 + embedding_width, depth_width),
                                     conv(depth_width, depth_width, dilation=2),
                                     conv(depth_width, depth_width, dilation=4),
                                     conv(depth_width, depth_width, dilation=8))  # reaches ~120 px of 256
        self.up = conv(depth_width + width, width)  # 128
        self.head = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor, embedding: torch.Tensor, previous: torch.Tensor, clicks: torch.Tensor,
                box: torch.Tensor) -> torch.Tensor:
        prior = previous.clamp(-PRIOR_LIMIT, PRIOR_LIMIT)
        fine = self.down(torch.cat([image, prior / PRIOR_LIMIT, clicks, box], dim=1))
        coarse = self.context(torch.cat([self.down_again(fine), self.project(embedding)], dim=1))
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        change = self.head(self.up(torch.cat([coarse, fine], dim=1)))
        return prior + F.interpolate(change, size=prior.shape[-2:], mode="bilinear", align_corners=False)
