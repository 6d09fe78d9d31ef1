"""The Synergistic Block (paper section 4.1, eq. 2-3) and its small building blocks.

One attention map, three parameter groups, each fed by one objective::

    h = norm1(x)
    A = softmax(rope(qk_norm(q_topo(h'))) rope(qk_norm(k_topo(h')))^T / sqrt(d))      topology stream
    x = x + o_proj(A' @ v_sem(h))                                                      content stream
    x = x + mlp(norm2(x))                                                              (SwiGLU)
    s = mean_tokens(A' @ v_itc(h))                                                     semantic stream

In ``decoupled`` routing ``A' = A.detach()`` and, as in the authors' released code
(``PanqiYang1/MUSE muse/models/muse_vit.py:172-193``), ``h' = h``:

* ``A.detach()`` (the released "gradient shield", ``muse_vit.py:192-196``) keeps reconstruction and semantic
  gradients away from ``q_topo``/``k_topo``: only a block's own topology loss trains its topology stream.
* ``q_topo``/``k_topo`` read ``h = norm1(x)`` *with* gradient, so a loss on block ``i``'s map ``A`` (the
  structural KL) updates ``q_topo``/``k_topo``/qk-norms and ``norm1`` of block ``i`` and, through the block input
  ``x``, the earlier blocks (their values and MLPs), the adapter and a trainable backbone. It never reaches block
  ``i``'s own ``v_sem``/``v_itc``/``o_proj``/MLP or any later block: the exact-zero claims hold **per block**.
* ``detach_topology_input=True`` (config ``MuseTokenizerConfig.detach_topology_input``) is this project's stricter
  variant, not the released behaviour: ``h' = h.detach()`` makes the topology stream a leaf computation, so a
  topology loss updates only ``q_topo``, ``k_topo`` and their qk-norms -- never any value, the residual stream,
  earlier blocks or the backbone.

In ``shared`` routing (also used by ``soft`` and by both stacks of ``two_stream``) nothing is detached, there is no
``v_itc`` and the semantic stream reads the pooled ``A @ v_sem(h)`` of the block.

The semantic stream here follows the paper (eq. 3: the semantic value aggregated by the topology map). The released
code instead pools ``v_itc`` of the un-normalised block input without attention (``muse_vit.py:203``,
``muse_vit.py:464``); docs/fidelity.md lists this and the other departures.

Inference cost: when no attention map is requested the block runs fused
``torch.nn.functional.scaled_dot_product_attention``; in ``decoupled`` routing it is fed ``q.detach()`` and
``k.detach()``, which is forward-identical to ``A.detach() @ v`` and sends gradients to ``v`` only. With autograd
off the three projections run as one matmul over their concatenated weights (the parameters stay separate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GradientCheckpointingLayer

__all__ = [
    "RotaryEmbedding2D",
    "SwiGLUMLP",
    "SynergisticBlock",
    "apply_rotary_2d",
    "pixel_unshuffle_tokens",
    "rotate_half",
]


def pixel_unshuffle_tokens(tokens: torch.Tensor, height: int, width: int, factor: int = 2) -> torch.Tensor:
    """Space-to-channel on a token grid.

    Args:
        tokens: ``(B, height * width, C)`` row-major tokens.
        height: Grid height.
        width: Grid width.
        factor: Unshuffle factor.

    Returns:
        ``(B, (height // factor) * (width // factor), C * factor**2)`` tokens.
    """
    b, n, c = tokens.shape
    if n != height * width:
        raise ValueError(f"pixel_unshuffle_tokens: got {n} tokens for a {height}x{width} grid.")
    if height % factor or width % factor:
        raise ValueError(f"pixel_unshuffle_tokens: grid {height}x{width} is not divisible by {factor}.")
    grid = tokens.transpose(1, 2).reshape(b, c, height, width)  # (B, C, h, w)
    grid = F.pixel_unshuffle(grid, factor)  # (B, C*f*f, h/f, w/f)
    return grid.flatten(2).transpose(1, 2)  # (B, N/f^2, C*f*f)


class RotaryEmbedding2D(nn.Module):
    """Axial 2D rotary position embedding over a ``(height, width)`` token grid.

    The first half of each head's rotary dims encodes the row, the second half the column (``rotate_half``
    layout). Tables are computed on the fly and cached per grid/device/dtype; the module has no state to save.
    """

    def __init__(self, head_dim: int, base: float = 100.0) -> None:
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"RotaryEmbedding2D needs head_dim divisible by 4, got {head_dim}.")
        self.head_dim = head_dim
        self.base = float(base)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(
        self, height: int, width: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(cos, sin)``, each ``(height * width, head_dim)``."""
        # Tables made under inference_mode are inference tensors, which autograd may not save: keep them apart.
        key = (height, width, str(device), dtype, torch.is_inference_mode_enabled())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        quarter = self.head_dim // 4
        inv_freq = 1.0 / (self.base ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))  # (hd/4,)
        rows = torch.arange(height, device=device, dtype=torch.float32)
        cols = torch.arange(width, device=device, dtype=torch.float32)
        rr, cc = torch.meshgrid(rows, cols, indexing="ij")  # (h, w)
        ang = torch.cat([rr.reshape(-1, 1) * inv_freq, cc.reshape(-1, 1) * inv_freq], dim=-1)  # (N, hd/2)
        emb = torch.cat([ang, ang], dim=-1)  # (N, hd)
        out = (emb.cos().to(dtype), emb.sin().to(dtype))
        if len(self._cache) > 16:
            self._cache.clear()
        self._cache[key] = out
        return out


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dim: the RoPE helper of the ``rotate_half`` layout (Llama / Qwen2),
    shared by the 2D RoPE here and the connector's 1D RoPE."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_2d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, H, N, hd)`` with tables ``(N, hd)`` from :class:`RotaryEmbedding2D`."""
    return x * cos + rotate_half(x) * sin


class SwiGLUMLP(nn.Module):
    """``down_proj(silu(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SynergisticBlock(GradientCheckpointingLayer):
    """Pre-norm transformer block with decoupled topology / content / semantic streams (see module docstring).

    Args:
        hidden_size: Width ``D``.
        num_attention_heads: Heads; ``D / heads`` must be a multiple of 4 (2D RoPE).
        intermediate_size: SwiGLU hidden width.
        routing: ``"decoupled"`` or ``"shared"`` (``soft`` / ``two_stream`` build shared blocks).
        semantic: Whether this block feeds the semantic stream. In ``decoupled`` routing this creates ``v_itc``;
            otherwise ``v_itc`` is ``None``.
        qkv_bias: Bias on ``q_topo``, ``k_topo``, ``v_sem``, ``v_itc``.
        qk_norm: Per-head RMSNorm on queries and keys (``q_norm``, ``k_norm``).
        eps: RMSNorm epsilon.
        detach_topology_input: ``decoupled`` only: feed ``q_topo``/``k_topo`` a detached ``norm1(x)`` (this
            project's stricter variant; the released code keeps the gradient, see the module docstring).
    """

    def __init__(
        self,
        hidden_size: int,
        num_attention_heads: int,
        intermediate_size: int,
        routing: str = "decoupled",
        semantic: bool = False,
        qkv_bias: bool = True,
        qk_norm: bool = True,
        eps: float = 1e-6,
        detach_topology_input: bool = False,
    ) -> None:
        super().__init__()
        if routing not in ("decoupled", "shared"):
            raise ValueError(f"SynergisticBlock routing must be 'decoupled' or 'shared', got {routing!r}.")
        if hidden_size % num_attention_heads != 0:
            raise ValueError(f"num_attention_heads={num_attention_heads} must divide hidden_size={hidden_size}.")
        self.hidden_size = hidden_size
        self.num_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.scale = self.head_dim**-0.5
        self.routing = routing
        self.decoupled = routing == "decoupled"
        self.semantic = semantic
        # PanqiYang1/MUSE muse/models/muse_vit.py:172-176: q_topo/k_topo read norm1(x) with gradient (default here)
        self.detach_topology_input = bool(detach_topology_input) and self.decoupled

        self.norm1 = nn.RMSNorm(hidden_size, eps=eps)
        self.q_topo = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_topo = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_sem = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_itc = nn.Linear(hidden_size, hidden_size, bias=qkv_bias) if (self.decoupled and semantic) else None
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.o_proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.RMSNorm(hidden_size, eps=eps)
        self.mlp = SwiGLUMLP(hidden_size, intermediate_size)
        self._fused_cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    # ------------------------------------------------------------------ helpers
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, -1)  # (B, N, H*hd)

    def _fused_qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v with one matmul over the concatenated weights (only used with autograd off)."""
        lins = (self.q_topo, self.k_topo, self.v_sem)
        key = tuple((lin.weight.data_ptr(), lin.weight._version, lin.weight.dtype) for lin in lins)
        if lins[0].bias is not None:
            key += tuple((lin.bias.data_ptr(), lin.bias._version) for lin in lins)
        if self._fused_cache is None or self._fused_cache[0] != key:
            weight = torch.cat([lin.weight for lin in lins], dim=0)  # (3D, D)
            bias = torch.cat([lin.bias for lin in lins], dim=0) if lins[0].bias is not None else None
            self._fused_cache = (key, weight, bias)
        _, weight, bias = self._fused_cache
        return F.linear(h, weight, bias).split(self.hidden_size, dim=-1)

    def attention_probs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Eager ``softmax(q k^T / sqrt(d))`` for ``(B, H, N, hd)`` inputs; returns ``(B, H, N, N)``."""
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale  # (B, H, N, N)
        return scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        output_attentions: bool = False,
        output_semantic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Run the block.

        Args:
            hidden_states: ``(B, N, D)`` tokens of a row-major grid.
            rope_cos: ``(N, head_dim)`` rotary table.
            rope_sin: ``(N, head_dim)`` rotary table.
            output_attentions: Compute the eager attention map and return it (with gradients to the topology
                stream). Otherwise fused SDPA runs.
            output_semantic: Compute the semantic stream (only meaningful when ``self.semantic``).

        Returns:
            ``(hidden_states (B, N, D), attentions (B, H, N, N) or None, semantic (B, D) or None)``.
        """
        h = self.norm1(hidden_states)  # (B, N, D)
        want_semantic = output_semantic and self.semantic
        if not torch.is_grad_enabled():
            q, k, v = self._fused_qkv(h)  # forward-identical; detach is moot without autograd
        else:
            topo_in = h.detach() if self.detach_topology_input else h  # released: h (muse_vit.py:175-176)
            q, k, v = self.q_topo(topo_in), self.k_topo(topo_in), self.v_sem(h)  # (B, N, D) each
        q = apply_rotary_2d(self.q_norm(self._heads(q)), rope_cos, rope_sin)  # (B, H, N, hd)
        k = apply_rotary_2d(self.k_norm(self._heads(k)), rope_cos, rope_sin)  # (B, H, N, hd)
        v = self._heads(v)  # (B, H, N, hd)
        if want_semantic and self.v_itc is not None:
            v = torch.cat([v, self._heads(self.v_itc(h))], dim=-1)  # (B, H, N, 2hd): one pass for both values

        attn = None
        if output_attentions:
            attn = self.attention_probs(q, k)  # (B, H, N, N), carries the topology gradient
            mix = attn.detach() if self.decoupled else attn  # released "gradient shield" (muse_vit.py:192-196)
            out = torch.matmul(mix, v)  # (B, H, N, hd or 2hd)
        else:
            if self.decoupled:
                q, k = q.detach(), k.detach()
            out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, hd or 2hd)

        content = out[..., : self.head_dim]
        semantic = None
        if want_semantic:
            sem = out[..., self.head_dim :] if self.v_itc is not None else content
            semantic = self._merge(sem).mean(dim=1)  # (B, D)

        hidden_states = hidden_states + self.o_proj(self._merge(content))  # (B, N, D)
        hidden_states = hidden_states + self.mlp(self.norm2(hidden_states))  # (B, N, D)
        return hidden_states, attn, semantic

    def extra_repr(self) -> str:
        extra = ", detach_topology_input=True" if self.detach_topology_input else ""
        return f"routing={self.routing}, heads={self.num_heads}, semantic={self.semantic}{extra}"
