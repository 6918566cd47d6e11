"""DeBERTa-v2/v3 family: BERT's post-norm blocks around disentangled (content and relative-position)
attention, whose weights come back only when the model is asked for them."""

from __future__ import annotations

from dataclasses import replace

from vzcore.families.bert import BERT

# The relative-position terms change only the attention weights, which are read from the model: the
# value path (value_proj, then output.dense after the weighted sum) and the rest of the block
# (DebertaV2Output: LayerNorm(dense(act(h)) + residual)) are BERT's, so BERT's spec and algebra hold.
DEBERTA_V2 = replace(
    BERT,
    name="deberta-v2",
    model_types=("deberta-v2",),  # DeBERTa-v3 checkpoints are `deberta-v2` models
    value_proj="attention.self.value_proj",
    padded_positions=(),
    weights_on_request=True,
)
