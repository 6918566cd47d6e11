"""Exact value zeroing of one block for many (target i, source j) pairs at once.

Zeroing token j's value vectors leaves the attention weights unchanged, so the zeroed attention
output is the clean one minus a correction of rank at most `H` per source:

    attn_out_i^{¬j} = attn_out_i − Δ_ij,   Δ_ij = Σ_h a_ij^h u_j^h,   u_j^h = v_j^h W_O^h

The feed-forward input projection of the norm that follows is factored the same way
(`W·Norm(s_i − Δ_ij)` from `W(γ⊙s_i)`, `W(γ⊙u_j^h)` and the pair's own norm statistics), so per
pair only `O(H·d_ff)` work precedes the activation and the down projection, which run on
`[pairs, d_ff]` through the model's own modules.

This is exact where the correction reaches the norm unchanged: the post-norm and pre-norm layouts
with a plain feed-forward (`BlockView` refuses the others; a norm on the attention output, for one,
is not linear in `Δ_ij`). `vzcore.ops.paths` picks this path or the parallel and generic ones.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch

from vzcore.families import SplitFinish, linear_params
from vzcore.ops import kernels
from vzcore.ops.activations import inplace_activation
from vzcore.ops.block import BlockView, UnsupportedBlockError
from vzcore.ops.norms import NormParams
from vzcore.ops.pairs import gather_rows

__all__ = ["BlockAlgebra", "minus_mixed", "pair_bytes", "source_blocks", "zeroed_block_outputs"]


@dataclass
class BlockAlgebra:
    """Per-layer quantities shared by every pair (`b` texts, `n` positions, `H` heads).

    The per-(source, head) projections `proj_u` (`[b, n, H + 1, F]` each: 1.2 GB for Qwen2.5-0.5B at
    n = 2048, linear in `n` but far above a pair budget) are made for a block of sources at a time
    (`projected`), so a long text holds one block's, not every source's.
    """

    u: torch.Tensor  # projected values `[b, n, H, d]`: u_j^h = v_j^h W_O^h
    s: torch.Tensor  # clean state after attention, the mix norm's input: `[b, n, d]`
    proj_s: list[torch.Tensor]  # W(γ⊙s'): `[b, n, F]` per input projection (s' centred for LayerNorm)
    values: torch.Tensor  # value vectors per query head `[b, n, H, d_h]`
    head_maps: list[torch.Tensor]  # W diag(γ) C W_O^h: `[F, H, d_h]` per input projection
    proj_bias: list[torch.Tensor]  # W β + b: `[F]` per input projection
    norm: NormParams  # the mix norm (γ stands for its scale: `1 + γ` for the offset kind)
    # W(γ⊙u'), then W β + b: `[b, n, H + 1, F]` per input projection, once `projected`
    proj_u: list[torch.Tensor] | None = None

    @classmethod
    def build(cls, view: BlockView) -> BlockAlgebra:
        """Build the algebra of one block; raises `UnsupportedBlockError` for a shape it is not exact for."""
        norm = view.mix_params()
        if not view.spec.first_projs or view.spec.finish is None:
            raise UnsupportedBlockError(f"{view.spec.name} blocks have a feed-forward with no factored form")
        u = view.projected_values()
        s = view.state_after_attention
        s_c = norm.centre(s)
        folded = _folded_weights(view, norm)
        proj_s = [s_c @ wg.t() for wg, _, _ in folded]
        head_maps = [maps for _, maps, _ in folded]
        return cls(u, s, proj_s, view.head_values(), head_maps, [bias for _, _, bias in folded], norm)

    def bytes_per_source(self) -> int:
        """Return the bytes `projected` takes per source position (every text of the batch)."""
        b, _, heads, _ = self.values.shape
        return b * (heads + 1) * sum(m.shape[0] for m in self.head_maps) * self.values.element_size()

    def projected(self) -> BlockAlgebra:
        """The same algebra with `proj_u` made for its sources (all of them: slice `sources` first)."""
        if self.proj_u is not None:
            return self
        proj_u = []
        for head_maps, bias in zip(self.head_maps, self.proj_bias, strict=True):
            # W(γ⊙u'_j^h) = (W diag(γ) C W_O^h) v_j^h at the cost of one projection per token, with the
            # constant W β + b appended as a last "head": `[b, n, H + 1, F]`.
            per_head = torch.einsum("bjhk,fhk->bjhf", self.values, head_maps)
            proj_u.append(torch.cat([per_head, bias.expand(*per_head.shape[:2], 1, -1)], 2))
        return replace(self, proj_u=proj_u)

    def texts(self, k: slice) -> BlockAlgebra:
        """The same algebra for texts `k` of the batch."""
        return replace(
            self,
            u=self.u[k],
            s=self.s[k],
            proj_s=[p[k] for p in self.proj_s],
            values=self.values[k],
            proj_u=None if self.proj_u is None else [p[k] for p in self.proj_u],
        )

    def sources(self, j: slice) -> BlockAlgebra:
        """The same algebra with sources `j` only (targets keep every position: they are gathered by row)."""
        return replace(
            self,
            u=self.u[:, j],
            values=self.values[:, j],
            proj_u=None if self.proj_u is None else [p[:, j] for p in self.proj_u],
        )


def pair_bytes(view: BlockView, alg: BlockAlgebra) -> int:
    """Return the working bytes of one (target, source) pair on the factored path.

    Each input projection's pre-activation `[F]` per pair, twice (the batched product's output and the
    activation's or the gather's copy), plus about eight `d`-wide rows (states, residual, outputs). Once
    the pair passes are compiled (their gather writes into the product's output) and the activation is
    one `activations` recognises (it runs in place), each projection is held once.
    """
    size, d = alg.s.element_size(), alg.s.shape[-1]
    width = sum(p.shape[-1] for p in alg.proj_s)
    finish = view.spec.finish
    act = inplace_activation(finish.activation(view.block)) if isinstance(finish, SplitFinish) else None
    once = act is not None and kernels.compiled(alg.s, alg.u, *alg.proj_s) and len(alg.proj_s) in (1, 2)
    return size * ((1 if once else 2) * width + 8 * d)


def source_blocks(n: int, per_source: int, budget: int) -> list[slice]:
    """Cut `n` sources into blocks for the factored path's per-source projections (`BlockAlgebra.projected`,
    `per_source` bytes each): one block when every source's fit `budget` bytes (short texts), else blocks
    of a quarter of it."""
    if per_source * n <= budget:
        return [slice(0, n)]
    # A quarter of the budget: each row chunk reads its block's projections whole, so smaller
    # blocks give more rows per chunk to share that read (one layer, one thread, CPU time:
    # SmolLM2 at n = 1024 8.5 s against 10.2 with blocks of the whole budget and 11.8 with every
    # source at once; Qwen2.5-0.5B at n = 512 9.3 s against 9.8; a sixteenth was slower on Qwen).
    size = max(1, budget // (4 * per_source))
    return [slice(j, min(n, j + size)) for j in range(0, n, size)]


_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.no_grad()
def _folded_weights(view: BlockView, norm: NormParams) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Return, per feed-forward input projection `W, b` after the mix norm `norm` (scale `γ`, bias `β`):
    `W diag(γ)` `[F, d]`, the per-head maps `W diag(γ) C W_O^h` `[F, H, d_h]` (C centres for LayerNorm)
    and the constant `W β + b` `[F]`. They depend on the block's weights and the norm's position and
    kind only, so they are cached per block, keyed on every weight they read: its identity, storage
    and version counter (which any in-place update bumps: `load_state_dict`, an optimiser step),
    plus the family, the norm's path and its kind (which says how its weight scales).
    """
    block, spec, mix = view.block, view.spec, view.mix_norm
    sources = [*block.get_submodule(spec.out_proj).parameters(), *block.get_submodule(mix.path).parameters()]
    sources += [p for path in spec.first_projs for p in block.get_submodule(path).parameters()]
    key = (spec.name, mix, *((id(p), p.data_ptr(), p.dtype, p.device, p._version) for p in sources))
    cached = _FOLDED.get(block)
    if cached is not None and cached[0] == key:
        return cached[1]
    heads = view.cap.attn.shape[1]  # query heads, from the weights (not every attention module keeps a config)
    w_o, _ = linear_params(block.get_submodule(spec.out_proj))  # `[d, H·d_h]`
    w_o = norm.centre(w_o.t()).t()  # C W_O: each column centred over `d` for LayerNorm
    folded = []
    for path in spec.first_projs:
        w, b = linear_params(block.get_submodule(path))
        wg = w * norm.scale  # `[F, d]`
        bias = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        if norm.bias is not None:
            bias = bias + w @ norm.bias
        if b is not None:
            bias = bias + b
        folded.append((wg, (wg @ w_o).unflatten(1, (heads, -1)), bias))
    _FOLDED[block] = (key, folded)
    return folded


def minus_mixed(rows: torch.Tensor, a: torch.Tensor, per_head: torch.Tensor) -> torch.Tensor:
    """Return `rows[k, i] − Σ_h a[k·n + j, i, h] per_head[k, j, h]` as `[b, n, t, d]`.

    `rows: [b, t, d]`, `a: [b·n, t, H]`, `per_head: [b, n, H, d]`: one batched product over every
    (text, source) (baddbmm with a broadcast input would loop over them).
    """
    b, n = per_head.shape[:2]
    mixed = torch.bmm(a, per_head.reshape(b * n, *per_head.shape[2:])).view(b, n, a.shape[1], -1)
    return torch.sub(rows[:, None], mixed, out=mixed)


def _finish(
    view: BlockView,
    s: torch.Tensor,
    first: list[torch.Tensor],
    precision: Callable[[], AbstractContextManager] | None,
) -> torch.Tensor:
    """Finish the block from states after attention `s: [p, d]` and the first projections `first: [p, F]`
    (temporaries of this module: an activation it recognises runs in place on them, `activations`).

    Only the down projection and what follows run under `precision` (lower, when asked for): they are
    the bulk of the work, while the sums before them carry the small differences. (Autocast leaves
    the activations and products in float32 on CPUs too; the in-place path keeps them there.)
    """
    residual = view.ffn_residual(s)
    finish = view.spec.finish
    assert finish is not None  # `BlockAlgebra.build` refuses a spec without one
    act = inplace_activation(finish.activation(view.block)) if isinstance(finish, SplitFinish) else None
    if act is None or not all(f.dtype == torch.float32 for f in first):
        with precision() if precision else nullcontext():
            return finish(view.block, first, residual).float()
    assert isinstance(finish, SplitFinish)
    hidden = act(first[0])
    if finish.gated:
        hidden = hidden.mul_(first[1])
    del first[:]  # the up projection is freed before the down projection runs
    with precision() if precision else nullcontext():
        return finish.rest(view.block, hidden, residual).float()


def _torch_pairs(
    alg: BlockAlgebra, a: torch.Tensor, s_rows: torch.Tensor, p_rows: list[torch.Tensor], flat: torch.Tensor | None
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Return the pairs' states after attention `[p, d]`, their first projections `[p, F]` each and the clean
    rows' `[b·t, F]` each, by torch passes over every pair of the chunk (then the valid ones gathered)."""
    assert alg.proj_u is not None
    bn, t, heads = a.shape
    b = s_rows.shape[0]
    n = bn // b
    s = minus_mixed(s_rows, a, alg.u)  # s_i − Δ_ij: `[b, n, t, d]`
    inv = alg.norm.inverse_scale(s)  # `[b, n, t, 1]`
    a_bias = torch.cat([a * inv.view(b * n, t, 1).neg(), torch.ones_like(a[..., :1])], -1)  # `[b·n, t, H+1]`

    # Gathering whole rows (index_select) copies at memory speed, where a boolean mask over `[b, n, t]`
    # took twice as long on the `[pairs, F]` projections.
    def pick(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, x.shape[-1])  # all pairs wanted: no copy
        return x if flat is None else x.index_select(0, flat)

    first, clean_first = [], []
    rows_inv = alg.norm.inverse_scale(s_rows)  # `[b, t, 1]`
    for p_row, pu, bias in zip(p_rows, alg.proj_u, alg.proj_bias, strict=True):
        # (W(γ⊙s_i') − Σ_h a_ij^h W(γ⊙u_j^h')) / σ_ij + Wβ + b: the bias rides along as an extra
        # "head" of weight 1 in one batched product (baddbmm would loop over the batch), then one pass.
        pre = torch.bmm(a_bias, pu.reshape(b * n, heads + 1, -1)).view(b, n, t, -1)  # `[b, n, t, F]`
        pre.addcmul_(p_row[:, None], inv)
        first.append(pick(pre))
        clean_first.append(torch.addcmul(bias, p_row, rows_inv).view(b * t, -1))
    return pick(s), first, clean_first


def _compiled_pairs(
    alg: BlockAlgebra, a: torch.Tensor, s_rows: torch.Tensor, p_rows: list[torch.Tensor], flat: torch.Tensor | None
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """`_torch_pairs` with the passes around the batched product compiled: the states, their norm
    statistics and the products' weights in one pass (`kernels.pair_states`), and the last scaling fused
    with the gather of the wanted pairs (`kernels.scaled_rows`). The `[pairs, F]` assembly itself stays
    one batched matrix product, which runs at twice the rate a compiled loop reached here."""
    assert alg.proj_u is not None
    bn, t, heads = a.shape
    b = s_rows.shape[0]
    n = bn // b
    rows = s_rows.reshape(b * t, -1)
    wanted = torch.arange(bn * t) if flat is None else flat
    states = (alg.norm.centred, alg.norm.eps)
    s, a_bias, inv = kernels.pair_states(n, a, alg.u.reshape(bn, heads, -1), rows, *states, wanted)
    # The clean rows by the same arithmetic, as pairs with no attention to take away: a pair whose weights
    # are all 0 gives exactly the clean row's projections (zeroing nothing changes nothing).
    clean_index = torch.arange(b * t)
    _, clean_bias, clean_inv = kernels.pair_states(
        1, a.new_zeros(b, t, heads), alg.u[:, :1].reshape(b, heads, -1), rows, *states, clean_index
    )
    first, clean_first = [], []
    for p_row, pu in zip(p_rows, alg.proj_u, strict=True):
        pre = torch.bmm(a_bias, pu.reshape(bn, heads + 1, -1)).view(bn * t, -1)  # `[b·n·t, F]`
        first.append(kernels.scaled_rows(flat, n, t, pre, p_row.reshape(b * t, -1), inv))
        clean_pre = torch.bmm(clean_bias, pu[:, :1].reshape(b, heads + 1, -1)).view(b * t, -1)
        clean_first.append(kernels.scaled_rows(None, 1, t, clean_pre, p_row.reshape(b * t, -1), clean_inv))
    return s, first, clean_first


def zeroed_block_outputs(
    view: BlockView,
    alg: BlockAlgebra,
    attn_rows: torch.Tensor,
    rows: torch.Tensor,
    valid: torch.Tensor | None,
    precision: Callable[[], AbstractContextManager] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(zeroed, clean)` outputs of the block `view` for the valid pairs of a batch, as `[p, d]` each or,
    when every pair is valid, as broadcastable `[b, n, t, d]` and `[b, 1, t, d]`.

    `attn_rows: [b, H, t, n]` are the attention rows of targets `rows: [b, t]`; `valid: [b, n, t]`
    (source major; `None` when every pair is wanted) selects the pairs, which come out in its
    row-major order. Work is laid out per (text, source j), so each correction is one batched
    matrix product over all texts and sources.
    """
    b, heads, t, n = attn_rows.shape
    alg = alg.projected()  # a no-op where the caller made them for a block of sources
    assert alg.proj_u is not None
    a = attn_rows.permute(0, 3, 2, 1).reshape(b * n, t, heads)  # `[b·n, t, H]`
    s_rows = gather_rows(alg.s, rows)  # `[b, t, d]`
    every = valid is None
    # The valid pairs' flat positions in `[b, n, t]` (source major), which is the order they come out in.
    flat = None if valid is None else valid.flatten().nonzero().squeeze(1)
    p_rows = [gather_rows(ps, rows) for ps in alg.proj_s]  # W(γ⊙s_i'): `[b, t, F]` each
    if kernels.compiled(a, alg.u, s_rows, *alg.proj_u, *p_rows) and len(alg.proj_u) in (1, 2):
        s, first, clean_first = _compiled_pairs(alg, a, s_rows, p_rows, flat)
    else:
        s, first, clean_first = _torch_pairs(alg, a, s_rows, p_rows, flat)
    zeroed = _finish(view, s, first, precision)
    # The clean outputs go through the same arithmetic, so zeroing nothing gives distance 0.
    clean = _finish(view, s_rows.view(b * t, -1), clean_first, precision).view(b, 1, t, -1)
    if every:  # `[b, n, t, d]` against `[b, 1, t, d]`: the distance broadcasts, no copy of the clean rows
        return zeroed.view(b, n, t, -1), clean
    assert valid is not None
    text, _, target = valid.nonzero(as_tuple=True)
    return zeroed, clean[text, 0, target]
