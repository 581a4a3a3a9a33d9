"""LoRA for decoder scorers: adapters on every linear layer, and checkpoints that hold the merged
weights (W + B·A·scale), a plain model folder that loads and serves without peft."""

from __future__ import annotations

import torch

__all__ = ["apply_lora", "merged_lora_state"]


def apply_lora(model, r: int):
    """Wrap a decoder scorer's transformer in LoRA adapters of rank ``r`` on every linear layer
    (``r = 0``: full fine-tuning, the model as it is). Checkpoints save the merged weights."""
    if not r:
        return model
    if model.kind != "decoder_yes":
        raise ValueError("train.lora_r applies to decoder bases (kind decoder_yes)")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("train.lora_r > 0 needs the 'lora' extra: pip install -e '.[lora]'") from e
    model.model = get_peft_model(model.model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"))
    return model


def merged_lora_state(peft_model) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA adapter's update added to the weight it adapts
    (W + B·A·scale), under the base model's own parameter names; the model itself is unchanged, so
    training goes on after a checkpoint."""
    base = peft_model.get_base_model()
    state = {name.replace(".base_layer.", "."): t.detach().clone() for name, t in base.state_dict().items()
             if "lora_" not in name}
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            key = f"{name}.weight"
            for adapter in module.active_adapters:
                if adapter in getattr(module, "lora_A", {}):
                    state[key] = state[key] + module.get_delta_weight(adapter).detach().to(state[key].dtype)
    return state
