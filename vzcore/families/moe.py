"""Mixture-of-experts decoders (Mixtral, Qwen2-MoE, Qwen3-MoE): LLaMA's pre-norm blocks with a routed
feed-forward. A zeroed pair may route to other experts than its clean token, so the feed-forward has
no factored form: value zeroing runs the block's own router and experts per pair (the generic path),
and the norm-based methods, which stop before the feed-forward, read the blocks as pre-norm."""

from __future__ import annotations

from dataclasses import replace

from vzcore.families.llama import LLAMA

MOE = replace(
    LLAMA,
    name="moe",
    model_types=("mixtral", "qwen2_moe", "qwen3_moe"),
    first_projs=(),
    finish=None,
)
