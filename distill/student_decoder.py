"""Mask decoders of our own: SAM's prompt-token design, made cheap where SAM's costs (a registry of two kinds).

SAM's decoder spends its 3.6 GFLOPs on 4096 image tokens 256 wide and on upscaling 256 channels at 64x64 and
128x128. Both kinds pool the image tokens and let the full 64x64 embedding (with the mask prior added) re-enter
through a 1x1 skip at 64x64, so pooling costs little boundary detail:
  compact-*     narrower tokens, fewer layers, a thin upscaling, trained from scratch;
  pooled-sam-*  SAM's own layers and weights (the student bundle's decoder) run on pooled tokens, the skip
                of low rank, initialised to add nothing, and the mask read at 128x128 then upsampled (or at 256
                by a third up-sampling that starts as nearest-neighbour): it starts where the bundle's decoder
                stands, so training spends its steps on clicks rather than on relearning boxes.
Each reads the same prompt tokens and dense prompt as SAM's decoder (the bundle's NumPy prompt encoder stays the
same) and answers as SAM's ``MaskDecoder.forward`` does, so training, reference and export code take any. Output 0
answers an unambiguous prompt (a box, clicks with a box or a prior, several clicks); outputs 1-3 are the
candidates for an ambiguous one (one click), chosen by the IoU head. Measured options: docs/experiments.md.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .torch_compat import import_torchvision

MASK_OUTPUTS = 4  # SAM's: one single answer + three multimask candidates
PROMPT_WIDTH = 256  # SAM's prompt-token and embedding width, which the prompt encoder keeps
SKIP_RANK = 32  # a pooled-sam decoder's full-resolution skip is a rank-32 1x1 map: a quarter of a full one's cost


@dataclass(frozen=True)
class DecoderSpec:
    width: int  # token width of the two-way transformer
    depth: int  # two-way attention blocks
    heads: int
    mlp: int  # hidden width of each block's token MLP
    pool: int  # image tokens: the 64x64 grid average-pooled by this factor
    upscale: tuple[int, ...]  # channels after each 2x transposed convolution, up to the 256x256 mask grid


@dataclass(frozen=True)
class PooledSamSpec:
    pool: int  # image tokens: the 64x64 grid average-pooled by this factor before SAM's two-way transformer
    readout: int = 128  # grid the masks are read at: 128 (then upsampled), or 256 through a third up-sampling


DECODERS: dict[str, DecoderSpec | PooledSamSpec] = {
    "compact-xs": DecoderSpec(width=96, depth=1, heads=4, mlp=384, pool=2, upscale=(32, 16, 8)),
    "compact-s": DecoderSpec(width=128, depth=2, heads=4, mlp=512, pool=2, upscale=(32, 16, 8)),
    "compact-m": DecoderSpec(width=128, depth=2, heads=4, mlp=512, pool=1, upscale=(32, 16)),
    "pooled-sam-2": PooledSamSpec(pool=2),
    "pooled-sam-2-256": PooledSamSpec(pool=2, readout=256),
    "pooled-sam-4": PooledSamSpec(pool=4),
}


def decoder_spec(name: str) -> DecoderSpec | PooledSamSpec:
    if name not in DECODERS:
        raise ValueError(f"unknown decoder '{name}'; known: {', '.join(DECODERS)}")
    return DECODERS[name]


def _mlp(width_in: int, hidden: int, width_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, width_out))


class CompactMaskDecoder(nn.Module):
    """(embedding, image PE, prompt tokens, dense prompt) -> (B, 4, 256, 256) logits and (B, 4) IoU estimates."""

    def __init__(self, spec: DecoderSpec, embedding_channels: int = PROMPT_WIDTH) -> None:
        super().__init__()
        import_torchvision()
        from segment_anything.modeling.common import LayerNorm2d
        from segment_anything.modeling.transformer import TwoWayTransformer

        self.spec = spec
        width = spec.width
        self.num_mask_tokens = MASK_OUTPUTS
        self.iou_token = nn.Embedding(1, width)
        self.mask_tokens = nn.Embedding(MASK_OUTPUTS, width)
        self.token_in = nn.Linear(PROMPT_WIDTH, width)
        self.image_in = nn.Conv2d(embedding_channels, width, 1)
        self.pe_in = nn.Conv2d(PROMPT_WIDTH, width, 1)
        self.transformer = TwoWayTransformer(depth=spec.depth, embedding_dim=width, num_heads=spec.heads,
                                             mlp_dim=spec.mlp)
        first, *rest = spec.upscale
        self.first_up = nn.ConvTranspose2d(width, first, 2, stride=2) if spec.pool > 1 else nn.Conv2d(width, first, 1)
        self.first_norm = LayerNorm2d(first)
        self.skip = nn.Conv2d(embedding_channels, first, 1)
        steps, channels = [], first
        for out in rest:
            steps += [nn.ConvTranspose2d(channels, out, 2, stride=2), nn.GELU()]
            channels = out
        self.upscale = nn.Sequential(*steps)
        self.hypernetworks = nn.ModuleList(_mlp(width, width, channels) for _ in range(MASK_OUTPUTS))
        self.iou_head = _mlp(width, width, MASK_OUTPUTS)

    def position_tokens(self, image_pe: torch.Tensor) -> torch.Tensor:
        """(1, width, h, w) positional encoding of the pooled image tokens: fixed once trained, so an export
        stores it (width x 32 x 32 floats) instead of computing SAM's 256-wide encoding each prompt."""
        pool = self.spec.pool
        return self.pe_in(F.avg_pool2d(image_pe, pool) if pool > 1 else image_pe)

    def predict_all(self, image_embeddings: torch.Tensor, position: torch.Tensor, sparse: torch.Tensor,
                    dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask output and IoU estimate for B prompts; the embedding is (1 or B, C, 64, 64), ``position``
        what ``position_tokens`` gives."""
        batch = sparse.shape[0]
        src = image_embeddings + dense  # broadcasts a single image's embedding over the prompts
        pool = self.spec.pool
        image_tokens = self.image_in(F.avg_pool2d(src, pool) if pool > 1 else src)
        _, width, height, grid_width = image_tokens.shape
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), self.token_in(sparse)], dim=1)
        hs, image_out = self.transformer(image_tokens, position.expand(batch, -1, -1, -1), tokens)
        image_out = image_out.transpose(1, 2).reshape(batch, width, height, grid_width)
        features = F.gelu(self.first_norm(self.first_up(image_out) + self.skip(src)))
        features = self.upscale(features)
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.hypernetworks)], dim=1)
        channels, out_height, out_width = features.shape[1:]
        masks = (hyper @ features.reshape(batch, channels, out_height * out_width)).reshape(batch, -1, out_height, out_width)
        return masks, self.iou_head(hs[:, 0])

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.forward``: the three candidates with ``multimask_output``, else output 0."""
        masks, iou = self.predict_all(image_embeddings, self.position_tokens(image_pe), sparse_prompt_embeddings,
                                      dense_prompt_embeddings)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]


class PooledSamDecoder(nn.Module):
    """SAM's mask decoder on pooled image tokens: the same (B, 4, 256, 256) logits and (B, 4) IoU estimates."""

    def __init__(self, spec: PooledSamSpec, sam_decoder: nn.Module) -> None:
        super().__init__()
        sam = copy.deepcopy(sam_decoder)
        self.spec = spec
        self.num_mask_tokens = MASK_OUTPUTS
        self.iou_token, self.mask_tokens, self.transformer = sam.iou_token, sam.mask_tokens, sam.transformer
        self.first_up, self.first_norm, _, self.second_up, _ = sam.output_upscaling
        self.hypernetworks, self.iou_head = sam.output_hypernetworks_mlps, sam.iou_prediction_head
        self.skip = nn.Sequential(nn.Conv2d(PROMPT_WIDTH, SKIP_RANK, 1), nn.Conv2d(SKIP_RANK, self.first_up.out_channels, 1))
        nn.init.zeros_(self.skip[1].weight)  # adds nothing until trained; the first factor keeps its random start
        nn.init.zeros_(self.skip[1].bias)
        channels = self.second_up.out_channels
        self.third_up = nn.ConvTranspose2d(channels, channels, 2, stride=2) if spec.readout == 256 else None
        if self.third_up is not None:  # starts as nearest-neighbour up-sampling: SAM's hypernetworks read it as before
            with torch.no_grad():
                self.third_up.weight.copy_(torch.eye(channels)[:, :, None, None].expand(-1, -1, 2, 2))
                self.third_up.bias.zero_()

    def new_layers(self) -> list[nn.Module]:
        """The layers SAM's decoder has no weights for."""
        return [self.skip] + ([self.third_up] if self.third_up is not None else [])

    def position_tokens(self, image_pe: torch.Tensor) -> torch.Tensor:
        """(1, 256, h, w) SAM's positional encoding pooled like the image tokens: stored by an export."""
        return F.avg_pool2d(image_pe, self.spec.pool)

    def predict_all(self, image_embeddings: torch.Tensor, position: torch.Tensor, sparse: torch.Tensor,
                    dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``CompactMaskDecoder.predict_all``."""
        batch = sparse.shape[0]
        src = image_embeddings + dense
        image_tokens = F.avg_pool2d(src, self.spec.pool)
        _, width, height, grid_width = image_tokens.shape
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse], dim=1)
        hs, image_out = self.transformer(image_tokens, position.expand(batch, -1, -1, -1), tokens)
        image_out = image_out.transpose(1, 2).reshape(batch, width, height, grid_width)
        features = self.first_up(image_out)
        if features.shape[-2:] != src.shape[-2:]:
            features = F.interpolate(features, size=src.shape[-2:], mode="bilinear", align_corners=False)
        features = F.gelu(self.second_up(F.gelu(self.first_norm(features + self.skip(src)))))
        if self.third_up is not None:
            features = self.third_up(features)
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.hypernetworks)], dim=1)
        channels, out_height, out_width = features.shape[1:]
        masks = (hyper @ features.reshape(batch, channels, out_height * out_width)).reshape(batch, -1, out_height, out_width)
        if self.third_up is None:  # read at 128: up to the 256 grid SAM's masks have
            masks = F.interpolate(masks, scale_factor=2, mode="bilinear", align_corners=False)
        return masks, self.iou_head(hs[:, 0])

    forward = CompactMaskDecoder.forward


def build_decoder(name: str, sam_decoder: nn.Module | None = None) -> CompactMaskDecoder | PooledSamDecoder:
    """A registered decoder; a ``pooled-sam`` one starts from ``sam_decoder`` (the student bundle's), or from
    LiteMedSAM's shape when none is given and a checkpoint will be loaded into it."""
    spec = decoder_spec(name)
    if isinstance(spec, DecoderSpec):
        return CompactMaskDecoder(spec)
    if sam_decoder is None:
        from .teachers import load_litemedsam

        sam_decoder = load_litemedsam().mask_decoder
    return PooledSamDecoder(spec, sam_decoder)


def describe(name: str) -> str:
    """One sentence for a model card: what the decoder is and where its weights started."""
    spec = decoder_spec(name)
    if isinstance(spec, PooledSamSpec):
        return (f"SAM's mask decoder (its layers and, at the start of training, the student bundle's weights) on image"
                f" tokens pooled {spec.pool}x, a 1x1 skip of the full 64x64 embedding, masks read at {spec.readout}x{spec.readout}")
    return (f"SAM's prompt-token design with {spec.width}-wide tokens, {spec.depth} two-way blocks, image tokens pooled"
            f" {spec.pool}x, upscaling channels {list(spec.upscale)}, trained from scratch")


def spec_record(name: str) -> dict:
    """What a manifest and a model card say about the decoder."""
    return {"architecture": name, **asdict(decoder_spec(name))}
