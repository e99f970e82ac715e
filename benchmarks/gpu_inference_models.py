"""The models ``gpu_inference.py`` compares, their weights, and the check every contender passes.

Each architecture is built twice with random weights: sepconv's model and timm's model of the
same name (identical parameter and MAC counts, recorded in the results). No trained weights
reach the GPU machine, and default random weights are no stand-in for them. With BatchNorm's
fresh running statistics (mean 0, variance 1) the activations shrink layer by layer (to ~2e-8
at MobileNetV2's logits), where fp16 underflows and an output check compares noise. With
running statistics calibrated on data but the affine parameters as initialised (weight 1, bias
0), the activations keep their scale but the network is chaotic: a random BatchNorm network
amplifies any perturbation about 1.2x per layer (Yang et al. 2019, "A Mean Field Theory of
Batch Normalization"), so bf16's rounding alone moves the logits by ~25% of their largest
value (measured on the CPU) and no contender could pass a check. Trained networks are neither.

:func:`calibrate_norms` therefore sets every BatchNorm's affine parameters to weight 1 and bias
:data:`NORM_SHIFT` (2), then its running statistics from a few batches of N(0, 1) images: each
BatchNorm outputs about N(2, 1), which ReLU6 and SiLU pass almost linearly, the activations
keep their scale through the network, and bf16 moves the fp32 logits by 1-2% of their largest
value, fp16 by 0.1-0.3% (mobilenet_v1, mobilenet_v2, efficientnet_b0, resnet50 at 64x64 on the
CPU), as with trained weights. What it left is recorded per model (``norm_output_std_*``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

import sepconv

# sepconv name -> timm name of the same architecture
PEERS = {
    "mobilenet_v2": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_b0",
    "mobilenet_v1": "mobilenetv1_100",
    "resnet50": "resnet50",
}
#: Largest accepted max|out - fp32| / max|fp32| for a bf16 contender: sepconv's own bound for a
#: bf16 backend (``compile_for_inference``), applied here to every contender alike.
BF16_TOLERANCE = 5e-2
#: The bias of every BatchNorm (module docstring).
NORM_SHIFT = 2.0
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 16


def build_pair(name: str, size: int, device: torch.device) -> tuple[nn.Module, nn.Module, dict]:
    """sepconv's and timm's ``name``, fp32 on the CPU in eval mode, BatchNorms calibrated
    (on ``device``, for speed); and what the calibration left (:func:`calibrate_norms`)."""
    import timm

    torch.manual_seed(0)
    ours = sepconv.create_model(name)
    torch.manual_seed(0)
    theirs = timm.create_model(PEERS[name], pretrained=False)
    facts = {}
    for label, model in (("sepconv", ours), ("timm", theirs)):
        facts[label] = calibrate_norms(model, size, device)
        model.to("cpu").eval()
    return ours, theirs, facts


def calibrate_norms(model: nn.Module, size: int, device: torch.device) -> dict[str, Any]:
    """Set every BatchNorm2d's weight to 1, its bias to :data:`NORM_SHIFT` and its running
    statistics from :data:`CALIBRATION_BATCHES` seeded batches of N(0, 1) images (a cumulative
    average of the batch statistics), in place.

    Only the norms run in training mode meanwhile (dropout and drop-path stay off). Returns the
    number of norms and the smallest and largest standard deviation of a norm module's output
    on a fresh batch in eval mode (after its activation, where the module applies one).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.to(device).eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        if m.affine:
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.fill_(NORM_SHIFT)
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            model(torch.randn(CALIBRATION_BATCH_SIZE, 3, size, size, generator=g).to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    stds: list[float] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: stds.append(out.float().std().item()))
        for m in norms
    ]
    with torch.no_grad():
        logits = model(torch.randn(CALIBRATION_BATCH_SIZE, 3, size, size, generator=g).to(device))
    for hook in hooks:
        hook.remove()
    return {
        "norms": len(norms),
        "norm_output_std_min": min(stds) if stds else None,
        "norm_output_std_max": max(stds) if stds else None,
        "logits_std": logits.float().std().item(),
        "params": sum(p.numel() for p in model.parameters()),
    }


def fp32_reference(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The fp32 output of ``model`` on ``x`` (NCHW, eager) on ``device``, TF32 off: what every
    contender's output is compared with."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        net = copy.deepcopy(model).to(device).eval()
        with torch.inference_mode():
            return net(x.to(device)).float()
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def check(output: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    """``max|output - reference| / max|reference|`` (the metric of sepconv's deployment check),
    top-1 agreement, and whether the error is within :data:`BF16_TOLERANCE`."""
    out, ref = output.detach().float(), reference.float()
    error = ((out - ref).abs().max() / ref.abs().max()).item() if out.shape == ref.shape else None
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item() if error is not None else 0.0
    passed = error is not None and error <= BF16_TOLERANCE  # a NaN fails too
    return {
        "rel_error": error,
        "top1_agreement": agree,
        "tolerance": BF16_TOLERANCE,
        "passed": passed,
    }
