"""Export-friendly wrappers around a SAM-style mask decoder (named inputs, dynamic prompt counts)."""

from __future__ import annotations

import math

import torch
from torch import nn

DECODER_INPUTS = ("image_embeddings", "sparse_prompt", "dense_prompt")
DECODER_OUTPUTS = ("low_res_logits", "iou_scores")


class DecoderForExport(nn.Module):
    """SAM's ``MaskDecoder.predict_masks`` with the image positional encoding computed in the graph.

    Inputs: image_embeddings (1, C, h, w); sparse_prompt (B, N, C) prompt tokens; dense_prompt (B, C, h, w).
    Outputs: low_res_logits (B, 4, 4h, 4w) for all mask tokens (index 0 is the single-mask answer, 1..3
    the multimask ones) and iou_scores (B, 4). Returning every token keeps the choice in NumPy.
    The positional encoding is SAM's ``PositionEmbeddingRandom`` over the embedding grid, built from the
    (2, C/2) Fourier matrix: stored as the (C, h, w) result it would be 4.2 MB of the file.
    """

    def __init__(self, mask_decoder: nn.Module, pe_gaussian: torch.Tensor) -> None:
        super().__init__()
        self.decoder = mask_decoder
        self.register_buffer("pe_gaussian", pe_gaussian.detach().clone())

    def image_positional_encoding(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) encoding of the embedding grid's cell centres, as ``PromptEncoder.get_dense_pe``.

        The grid comes from the input's shape (``ones_like``), so the exporter keeps it as a few graph nodes
        instead of folding it into a constant."""
        grid = torch.ones_like(image_embeddings[0, 0])
        height, width = grid.shape
        y = (grid.cumsum(dim=0) - 0.5) / height
        x = (grid.cumsum(dim=1) - 0.5) / width
        coords = 2 * math.pi * ((2 * torch.stack([x, y], dim=-1) - 1) @ self.pe_gaussian)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1).unsqueeze(0)

    def forward(
        self, image_embeddings: torch.Tensor, sparse_prompt: torch.Tensor, dense_prompt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dec = self.decoder
        batch = sparse_prompt.shape[0]
        _, channels, height, width = image_embeddings.shape
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt], dim=1)
        src = image_embeddings.expand(batch, -1, -1, -1) + dense_prompt
        pos_src = self.image_positional_encoding(image_embeddings).expand(batch, -1, -1, -1)
        hs, src = dec.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + dec.num_mask_tokens, :]
        src = src.transpose(1, 2).reshape(batch, channels, height, width)
        upscaled = dec.output_upscaling(src)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )
        up_channels, up_height, up_width = upscaled.shape[1:]
        masks = (hyper_in @ upscaled.reshape(batch, up_channels, up_height * up_width)).reshape(
            batch, -1, up_height, up_width
        )
        return masks, dec.iou_prediction_head(iou_token_out)


class CompactDecoderForExport(DecoderForExport):
    """The same inputs and outputs around a ``student_decoder`` decoder (``predict_all``), its position tokens
    computed in the graph from the embedding grid, as SAM's are."""

    def forward(
        self, image_embeddings: torch.Tensor, sparse_prompt: torch.Tensor, dense_prompt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        position = self.decoder.position_tokens(self.image_positional_encoding(image_embeddings))
        return self.decoder.predict_all(image_embeddings, position, sparse_prompt, dense_prompt)


def sam_decoder_for_export(net: nn.Module) -> DecoderForExport:
    """The export wrapper around a SAM-style model's mask decoder, with its prompt encoder's Fourier matrix."""
    wrapper = CompactDecoderForExport if hasattr(net.mask_decoder, "predict_all") else DecoderForExport
    return wrapper(net.mask_decoder, net.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix)


def export_encoder(encoder: nn.Module, input_size: int, path: str, opset: int = 17) -> None:
    """Write the image encoder as ONNX: image (1, 3, S, S) float32 -> image_embeddings."""
    dummy = torch.zeros(1, 3, input_size, input_size)
    torch.onnx.export(
        encoder, (dummy,), path, input_names=["image"], output_names=["image_embeddings"],
        opset_version=opset, dynamo=False, do_constant_folding=True,
    )


def export_decoder(wrapper: DecoderForExport, embedding_shape: tuple[int, ...], path: str, opset: int = 17) -> None:
    """Write the decoder as ONNX with a dynamic prompt batch and token count."""
    channels, height, width = embedding_shape
    dummy = (
        torch.zeros(1, channels, height, width),
        torch.zeros(2, 3, channels),
        torch.zeros(2, channels, height, width),
    )
    torch.onnx.export(
        wrapper, dummy, path, input_names=list(DECODER_INPUTS), output_names=list(DECODER_OUTPUTS),
        opset_version=opset, dynamo=False, do_constant_folding=True,
        dynamic_axes={
            "sparse_prompt": {0: "prompts", 1: "tokens"},
            "dense_prompt": {0: "prompts"},
            "low_res_logits": {0: "prompts"},
            "iou_scores": {0: "prompts"},
        },
    )
