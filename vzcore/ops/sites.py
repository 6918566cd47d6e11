"""Exact value zeroing at one attention site of an encoder–decoder block, for all (target, source) pairs.

Zeroing source j's values in the site's attention leaves its weights unchanged, so that attention's
output is the clean one minus a rank-≤H correction (docs/value-zeroing.md §3),

    z_i^{¬j} = z_i − Σ_h a_ij^h u_j^h,    u_j^h = v_j^h W_O^h,

and zeroing a span S of sources at once subtracts the sum of its members' terms. The rest of the
block — the residual add and its norms, a cross-attention whose queries now differ per pair, the
feed-forward — runs through the model's own modules on `[pairs, d]` (the generic path of
`vzcore.ops.paths`, for blocks of several sublayers), in chunks of target rows under a memory budget.

Where the site's attention is followed by the feed-forward alone (the encoder's self-attention, the
decoder's cross-attention) and the family names its feed-forward's input projections, single sources
take the factored path instead (`vzcore.ops.zeroing`): the sublayer is seen as a single-stack block
(post-norm or pre-norm) whose input is the residual stream entering it, and per pair only the
activation and the down projection run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from vzcore.capture import LayerCapture, SiteCapture
from vzcore.families import BlockShape, FamilySpec, linear_params
from vzcore.families.encdec import EncDecSpec, Sublayer
from vzcore.ops.block import BlockView
from vzcore.ops.pairs import pair_chunks
from vzcore.ops.zeroing import BlockAlgebra, source_blocks, zeroed_block_outputs

__all__ = ["SITE_PATHS", "SiteBlock", "SitePath", "single_stack_spec", "site_distances", "site_path"]

SitePath = Literal["factored", "generic"]
SITE_PATHS: tuple[SitePath, ...] = ("factored", "generic")


def single_stack_spec(spec: EncDecSpec, site: str) -> FamilySpec | None:
    """Return the site's attention sublayer and the feed-forward after it as a single-stack family spec
    (a post-norm or pre-norm block), or None where more than the feed-forward follows (a decoder's
    self-attention) or the family names no feed-forward input projections."""
    stack = spec.stack(site)
    k = spec.site_sublayer(site)
    rest = stack.sublayers[k + 1 :]
    if len(rest) != 1 or rest[0].kind != "ffn" or not stack.first_projs or spec.finish is None:
        return None
    attn, ffn = stack.sublayers[k], rest[0]
    shape = BlockShape(
        before_attn=attn.before, after_attn_sum=attn.after, before_ffn=ffn.before, after_ffn_sum=ffn.after
    )
    if shape.layout not in ("post-norm", "pre-norm"):
        return None
    return FamilySpec(
        name=f"{spec.name} {site}",
        model_types=(),
        layers=stack.layers,
        attention=attn.path,
        value_proj=f"{attn.path}.{spec.value}",
        out_proj=f"{attn.path}.{spec.out}",
        causal=False,
        shape=shape,
        ffn=None,
        first_projs=stack.first_projs,
        finish=spec.finish,
    )


def site_path(spec: EncDecSpec, site: str) -> SitePath:
    """Return the exact path single sources of `site` take: `factored` where the feed-forward alone
    follows the site's attention, else `generic` (spans always take the generic path)."""
    return "factored" if single_stack_spec(spec, site) is not None else "generic"


@dataclass
class SiteBlock:
    """One block of an encoder–decoder seen from one of its attention sites, with its clean capture."""

    spec: EncDecSpec
    site: str  # "encoder", "decoder" or "cross"
    block: Any  # the block module: its submodules are reached by the spec's paths
    cap: SiteCapture

    @property
    def k(self) -> int:
        """The index of the site's attention among the block's sublayers."""
        return self.spec.site_sublayer(self.site)

    @property
    def sublayers(self) -> tuple[Sublayer, ...]:
        return self.spec.stack(self.site).sublayers

    def _norm(self, norm: Any, v: torch.Tensor) -> torch.Tensor:
        return v if norm is None else self.block.get_submodule(norm.path)(v)

    def residual_in(self) -> torch.Tensor:
        """Return the residual stream entering the site's sublayer `[n_t, d]`, from the block input and
        the clean outputs of the attentions before it, through the block's own norms."""
        h = self.cap.x
        for m in range(self.k):
            h = self._norm(self.sublayers[m].after, h + self.cap.attn_outs[m])
        return h

    def projected_values(self) -> torch.Tensor:
        """Return each source's part of the attention output per head, `u_j^h = v_j^h W_O^h`: `[n_s, H, d]`."""
        attention = self.block.get_submodule(self.sublayers[self.k].path)
        w_o, _ = linear_params(attention.get_submodule(self.spec.out))  # `[d, H·d_h]`
        heads = self.cap.values.shape[1]
        return torch.einsum("jhk,dhk->jhd", self.cap.values, w_o.unflatten(1, (heads, -1)))

    def finish(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Return block outputs `[p, d]` from residual inputs `x: [p, d]` and site attention outputs `z: [p, d]`
        (after `W_O`): the residual add, then every later sublayer through the model's own modules."""
        h = self._norm(self.sublayers[self.k].after, x + z)
        for sub in self.sublayers[self.k + 1 :]:
            inp = self._norm(sub.before, h)
            if sub.kind == "ffn":
                f = self.spec.ffn(self.block, inp)
            elif sub.kind == "cross":
                if self.cap.kv is None:
                    raise ValueError("a cross-attention after the zeroed one needs the encoder's states")
                # queries differ per pair; keys and values are the encoder's clean states
                f = self.block.get_submodule(sub.path)(inp[None], key_value_states=self.cap.kv[None])[0][0]
            else:
                raise ValueError(f"a {sub.kind} sublayer after the site's attention is not supported")
            h = self._norm(sub.after, h + f)
        return h

    def single_stack_view(self) -> BlockView | None:
        """Return the site's attention and the feed-forward after it as a single-stack block (a post-norm
        or pre-norm `BlockView` on the residual entering the sublayer), or None where the site has no
        factored path (`site_path`)."""
        spec = single_stack_spec(self.spec, self.site)
        if spec is None:
            return None
        cap = self.cap
        x = self.residual_in()
        z = cap.attn_outs[self.k]
        # (`closing_in` serves only the norm-based methods, never read here)
        view_cap = LayerCapture(
            x=x[None], attn=cap.attn[None], values=cap.values[None], attn_out=z[None], out=cap.out[None]
        )
        return BlockView(spec, self.block, view_cap)

    def bytes_per_pair(self) -> int:
        """Working memory of one (target, source) pair: the block's widest intermediates, bounded by its
        parameters per model dimension, and a later cross-attention's weights over the encoder."""
        d = self.cap.x.shape[-1]
        width = sum(p.numel() for p in self.block.parameters()) // d + 8 * d
        if self.cap.kv is not None:
            width += self.cap.attn.shape[0] * self.cap.kv.shape[0]
        return self.cap.x.element_size() * width


@torch.no_grad()
def site_distances(
    sb: SiteBlock,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    spans: Sequence[torch.Tensor] | None = None,
    causal: bool = False,
    memory_budget: int = 64 * 2**20,
    factored: bool | None = None,
    window: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Return the raw distances `C[i, c]` (float64) of one block: target `i`, column `c` a source (or the
    span `spans[c]`, an index tensor of sources zeroed together). `causal`: pairs `j > i` are 0 (not computed).
    `factored`: take the factored path (None: where it applies, i.e. single sources of a site followed by
    the feed-forward alone; False: always the generic path). `window = (rows, sources)`: only the first
    `rows` targets and the first `sources` sources (an utterance's frames in Whisper's 30 s window); every
    output still reads the whole clean state (padding included), so the kept entries are unchanged."""
    rows_kept, sources_kept = window if window is not None else (sb.cap.attn.shape[1], sb.cap.attn.shape[2])
    view = sb.single_stack_view() if factored is not False and spans is None and not causal else None
    if factored and view is None:
        raise ValueError(f"the {sb.site} site of {sb.spec.name} blocks has no factored path (or spans were given)")
    if view is not None:
        return _factored_distances(view, distance, memory_budget, rows_kept, sources_kept)
    cap = sb.cap
    a = cap.attn[:, :rows_kept, :sources_kept]  # `[H, n_t, n_s]`
    _, n_t, n_s = a.shape
    u = sb.projected_values()[:sources_kept]  # `[n_s, H, d]`
    x = sb.residual_in()[:rows_kept]  # `[n_t, d]`
    z = cap.attn_outs[sb.k][:rows_kept]  # `[n_t, d]`
    clean = sb.finish(x, z)  # the clean outputs through the same modules: zeroing nothing gives 0
    cols = n_s if spans is None else len(spans)
    dist = torch.zeros((n_t, cols), dtype=torch.float64, device=x.device)
    rows_per_chunk = max(1, min(n_t, memory_budget // max(1, cols * sb.bytes_per_pair())))
    for r0 in range(0, n_t, rows_per_chunk):
        rows = slice(r0, min(n_t, r0 + rows_per_chunk))
        t = rows.stop - rows.start
        if spans is None:
            # Δ[j, i] = Σ_h a[h, i, j] u[j, h]: one batched product over the sources, `[n_s, t, d]`
            delta = torch.bmm(a[:, rows].permute(2, 1, 0), u)
        else:
            # a span's correction: its members' terms summed, `[t, |S|·H] @ [|S|·H, d]`
            delta = torch.stack(
                [a[:, rows][:, :, s].permute(1, 2, 0).reshape(t, -1) @ u[s].reshape(-1, u.shape[-1]) for s in spans]
            )
        zeroed = z[rows][None] - delta  # `[cols, t, d]`
        xs = x[rows][None].expand_as(zeroed)
        if causal and spans is None:
            valid = (
                torch.arange(n_s, device=x.device)[:, None]
                <= torch.arange(rows.start, rows.stop, device=x.device)[None]
            )
            out = sb.finish(xs[valid], zeroed[valid])  # `[p, d]`
            target = valid.nonzero()[:, 1]
            dist[rows].T[valid] = distance(out, clean[rows][target])  # (the transpose is a view)
        else:
            out = sb.finish(xs.reshape(-1, xs.shape[-1]), zeroed.reshape(-1, zeroed.shape[-1])).view(cols, t, -1)
            dist[rows] = distance(out, clean[rows][None]).T
    return dist


def _factored_distances(
    view: BlockView,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    memory_budget: int,
    rows_kept: int,
    sources_kept: int,
) -> torch.Tensor:
    """Distances `[n_t, n_s]` of every (target, source) pair by the factored path of `vzcore.ops.zeroing`,
    for the first `rows_kept` targets and `sources_kept` sources."""
    kept = BlockAlgebra.build(view).sources(slice(0, sources_kept))
    attn = view.cap.attn[:, :, :rows_kept, :sources_kept]  # `[1, H, n_t, n_s]`
    _, _, n_t, n_s = attn.shape
    per_pair = view.cap.x.element_size() * (2 * sum(p.shape[-1] for p in kept.proj_s) + 8 * view.cap.x.shape[-1])
    dist = torch.zeros((n_t, n_s), dtype=torch.float64, device=attn.device)
    rows = torch.arange(n_t, device=attn.device)[None]  # `[1, n_t]`
    # the sources' projections a block at a time (every row chunk of the block reads them), within the budget
    for block in source_blocks(n_s, kept.bytes_per_source(), memory_budget):
        alg = kept.sources(block).projected()
        width = block.stop - block.start
        for _, chunk in pair_chunks(1, n_t, width, per_pair, memory_budget):
            zeroed, clean = zeroed_block_outputs(view, alg, attn[:, :, chunk, block], rows[:, chunk], None)
            dist[chunk, block] = distance(zeroed, clean)[0].T  # `[1, width, t]` -> `[t, width]`
    return dist
