"""A student's PyTorch weights read back from its exported ONNX encoder.

A bundle ships ONNX only, and a training run's checkpoint does not outlive the machine it ran on; a later stage
(``train --init weights/<bundle>/encoder.onnx``) must still be able to start from what shipped. The exporter
folds each batch norm into the convolution before it, so the read-back student has every batch norm set to the
identity plus the folded bias: the same function in eval mode, and a stage trained from it must keep its
batch-norm statistics frozen (``train`` does so for an ONNX ``--init``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .student import StudentEncoder, build_student


def _convolutions_in_call_order(student: nn.Module) -> list[nn.Conv2d]:
    """The convolutions in the order the forward pass runs them, which is the exported graph's Conv order."""
    called: list[nn.Conv2d] = []
    hooks = [module.register_forward_hook(lambda module, *_: called.append(module))
             for module in student.modules() if isinstance(module, nn.Conv2d)]
    with torch.no_grad():
        student.eval()(torch.zeros(1, 3, student.config.input_size, student.config.input_size))
    for hook in hooks:
        hook.remove()
    return called


def _batch_norm_after(student: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each convolution that a batch norm follows in the same Sequential (``student.conv_bn``)."""
    pairs = {}
    for module in student.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for first, second in zip(children, children[1:]):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    pairs[first] = second
    return pairs


def student_from_onnx(encoder_onnx: Path, name: str, out_channels: int = 256) -> StudentEncoder:
    """The registered student ``name`` with the weights of ``encoder_onnx`` (exported by ``export_student``)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(encoder_onnx))
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    exported = [[initializers[name] for name in node.input if name in initializers]
                for node in model.graph.node if node.op_type == "Conv"]
    student = build_student(name, out_channels=out_channels)
    convolutions = _convolutions_in_call_order(student)
    if len(convolutions) != len(exported):
        raise ValueError(f"{encoder_onnx} has {len(exported)} convolutions, {name} has {len(convolutions)}: "
                         "not an export of this student")
    norms = _batch_norm_after(student)
    with torch.no_grad():
        for conv, tensors in zip(convolutions, exported):
            weight, bias = tensors[0], (tensors[1] if len(tensors) > 1 else None)
            if weight.shape != tuple(conv.weight.shape):
                raise ValueError(f"{encoder_onnx}: a convolution of shape {weight.shape} where {name} has "
                                 f"{tuple(conv.weight.shape)}: not an export of this student")
            conv.weight.copy_(torch.tensor(weight))
            if conv in norms:
                norm = norms[conv]
                norm.weight.fill_(1.0)
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
                norm.bias.copy_(torch.tensor(bias if bias is not None else np.zeros(weight.shape[0], np.float32)))
            elif conv.bias is not None:
                conv.bias.copy_(torch.tensor(bias))
    return student.eval()
