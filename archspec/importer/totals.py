"""The totals of a PyTorch model, measured by torch, for the imported spec's ``expect:``.

They are measured the way ``build --verify`` measures a generated module: parameters (every part,
and without the aux heads), state_dict buffers, MACs with ``torch.utils.flop_counter`` (FLOPs / 2,
conv and linear, at batch 1 in eval: the batch of 2 halved, since a BatchNorm without running
statistics cannot normalise one sample) and the output shape. ``archspec check`` then checks the
spec's own analysis against them.
"""
from __future__ import annotations


def measure(model, input_shape, aux_modules=(), inputs: dict | None = None) -> dict:
    """The totals; ``inputs``, if given, is filled with id(module) -> the size of the first
    dimension of its input (a block's ``in_channels``), for the modules the forward in eval calls
    with one tensor of one size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for a in aux_modules for p in a.parameters())
    names = {k for k, _ in model.named_parameters()}
    buffers = sum(v.numel() for k, v in model.state_dict().items() if k not in names)
    first = next(iter(model.state_dict().values()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = {m: m.training for m in model.modules()}
    hooks = [m.register_forward_pre_hook(_recorder(inputs)) for m in model.modules()] if inputs is not None else []
    try:
        model.eval()
        x = torch.randn(2, *input_shape, device=device, dtype=dtype)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = model(x)
    except Exception as exc:  # the user's forward, on an input the user chose
        from ..errors import ImportModelError
        from .trace import user_frame

        text = " ".join(str(exc).split())[:300]
        raise ImportModelError(f"running the model on an input of {'x'.join(map(str, (2, *input_shape)))} failed "
                               f"(is --input right?): {type(exc).__name__}: {text}", user_frame(exc.__traceback__)) from None
    finally:
        for m, mode in modes.items():
            m.training = mode
        for h in hooks:
            h.remove()
    return {"params": params, "params_eval": params - aux, "buffers": buffers,
            "macs": counter.get_total_flops() // 2 // 2, "output": list(out.shape[1:])}


def _recorder(inputs: dict):
    import torch

    def hook(module, args):
        x = args[0] if len(args) == 1 else None
        size = int(x.shape[1]) if isinstance(x, torch.Tensor) and x.dim() >= 2 else None
        if inputs.setdefault(id(module), size) != size:  # called at two sizes: no one size to write
            inputs[id(module)] = None

    return hook
