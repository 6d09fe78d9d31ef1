"""Gradient tools: the routing operators, the gradient-conflict probe and the ``soft`` routing penalty.

* ``GradientScale`` / ``grad_scale`` and ``SpectralGradientFilter`` / ``spectral_grad_filter`` live in
  :mod:`muse_hf.models.grad_ops` (the model applies them) and are re-exported here.
* :func:`gradient_conflict` measures, per parameter group, the cosine similarity between the gradients of
  every pair of objectives and how each objective's gradient norm is shared (paper Figure 2, Table 4
  "Cos Sim"). It works on any ``nn.Module``; :func:`default_param_groups` gives the groups of a
  ``MuseTokenizerModel``.
* :func:`objective_pair_cosines` / :func:`block_gradient_cosines` report the three pairs the paper and the
  released code look at, on the synergistic blocks' parameters: semantic/reconstruction (paper Table 4),
  reconstruction/topology (the released stage-1 hook) and semantic/topology (the released stages 2-3 hook,
  ``PanqiYang1/MUSE muse/utils/train_utils.py:71-121, 1017-1025, 1136-1144``).
* :func:`soft_routing_penalty` is the extra term of ``routing="soft"``: the squared cosine between two
  objectives' gradients on shared parameters, differentiable (``create_graph=True``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from muse_hf.models.grad_ops import GradientScale, SpectralGradientFilter, grad_scale, spectral_grad_filter

__all__ = [
    "GradientScale",
    "SpectralGradientFilter",
    "grad_scale",
    "spectral_grad_filter",
    "GradientConflictResult",
    "PROBE_PAIRS",
    "block_gradient_cosines",
    "gradient_conflict",
    "objective_pair_cosines",
    "default_param_groups",
    "shared_block_parameters",
    "soft_routing_penalty",
]

# The objective pairs every probe reports, as "a|b" keys: the paper's Table 4 pair, then the released training
# hook's stage-1 pair (train_utils.py:1017-1025) and stages 2-3 pair (train_utils.py:1136-1144).
PROBE_PAIRS: tuple[tuple[str, str], ...] = (
    ("semantic", "reconstruction"),
    ("reconstruction", "topology"),
    ("semantic", "topology"),
)

# Group name -> regex over a synergistic block's parameter name *relative to the block*.
_BLOCK_GROUP_PATTERNS: dict[str, str] = {
    "topology": r"^(q_topo|k_topo|q_norm|k_norm|q_topo_norm|k_topo_norm)\.",
    "values": r"^(v_sem|v_itc|o_proj)\.",
    "mlp": r"^mlp\.",
}


@dataclass
class GradientConflictResult:
    """What :func:`gradient_conflict` measured.

    Attributes:
        cosine: ``cosine[group][(a, b)]`` cosine similarity between objective ``a``'s and ``b``'s gradients on
            the group's parameters (pairs in the order the losses were given). Defined as 0 when either
            gradient is exactly zero (the objectives do not interact there).
        norms: ``norms[group][name]`` L2 norm of objective ``name``'s gradient on the group.
        objective_share: ``objective_share[group][name]`` = ``norms[group][name] / sum_o norms[group][o]``:
            which objective dominates the group (0 for every objective when all are zero).
        group_share: ``group_share[group][name]`` = ``norms[group][name]**2 / sum_g norms[g][name]**2``: the
            fraction of objective ``name``'s squared gradient norm (over all probed groups) that lands in
            ``group`` (Figure 2c's functional specialisation; sums to 1 over disjoint groups).
    """

    cosine: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    norms: dict[str, dict[str, float]] = field(default_factory=dict)
    objective_share: dict[str, dict[str, float]] = field(default_factory=dict)
    group_share: dict[str, dict[str, float]] = field(default_factory=dict)

    def cos(self, group: str, a: str, b: str) -> float:
        """Cosine between objectives ``a`` and ``b`` on ``group``, in either order."""
        pairs = self.cosine[group]
        return pairs[(a, b)] if (a, b) in pairs else pairs[(b, a)]

    def to_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """JSON-friendly form (pair keys become ``"a|b"``)."""
        return {
            "cosine": {g: {f"{a}|{b}": v for (a, b), v in pairs.items()} for g, pairs in self.cosine.items()},
            "norms": self.norms,
            "objective_share": self.objective_share,
            "group_share": self.group_share,
        }

    def to_markdown(self) -> str:
        """A markdown table: one row per group, columns per objective pair's cosine and per objective's share."""
        groups = list(self.norms)
        if not groups:
            return ""
        pairs = list(next(iter(self.cosine.values())).keys()) if self.cosine else []
        names = list(self.norms[groups[0]])
        header = ["group"] + [f"cos({a},{b})" for a, b in pairs] + [f"share {n}" for n in names]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for g in groups:
            row = [g] + [f"{self.cosine[g][p]:+.4f}" for p in pairs] + [f"{self.group_share[g][n]:.3f}" for n in names]
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)


def _unique_trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """Parameters that require grad, each once, in order."""
    seen: set[int] = set()
    out = []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _flat_grads(loss: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False) -> list[torch.Tensor]:
    """``d loss / d p`` for each parameter (zeros for parameters the loss does not reach)."""
    if loss.ndim != 0:
        raise ValueError(f"losses must be scalars, got a tensor of shape {tuple(loss.shape)}.")
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in params]
    grads = torch.autograd.grad(loss, params, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two flat vectors, 0 when either is exactly zero."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        na, nb = a.norm(), b.norm()
        if na == 0 or nb == 0:
            return a.new_zeros(())
        return (a @ b) / (na * nb)


@torch.no_grad()
def _summarise(
    grads: dict[str, dict[str, torch.Tensor]], names: list[str], groups: list[str]
) -> GradientConflictResult:
    result = GradientConflictResult()
    for g in groups:
        result.cosine[g] = {
            (a, b): float(_cosine(grads[a][g], grads[b][g])) for a, b in itertools.combinations(names, 2)
        }
        result.norms[g] = {n: float(grads[n][g].norm()) for n in names}
        total = sum(result.norms[g].values())
        result.objective_share[g] = {n: (v / total if total > 0 else 0.0) for n, v in result.norms[g].items()}
    for n in names:
        total_sq = sum(result.norms[g][n] ** 2 for g in groups)
        for g in groups:
            result.group_share.setdefault(g, {})[n] = result.norms[g][n] ** 2 / total_sq if total_sq > 0 else 0.0
    return result


def gradient_conflict(
    model: nn.Module,
    losses: Mapping[str, torch.Tensor],
    param_groups: Mapping[str, Sequence[nn.Parameter]] | None = None,
) -> GradientConflictResult:
    """Per-objective gradients over parameter groups: pairwise cosine similarity and norm shares.

    Each loss is differentiated separately with ``torch.autograd.grad(..., retain_graph=True)``; parameters a
    loss does not reach count as zero gradient. Nothing is written to ``.grad`` and the graph stays usable
    (call ``backward`` on the total afterwards if you are training).

    Args:
        model: the model (used for the default groups).
        losses: objective name -> scalar loss (at least two), all built from one forward pass of ``model``.
        param_groups: group name -> parameters; ``None`` uses :func:`default_param_groups` (a
            ``MuseTokenizerModel``) or, for other models, one group ``"all"`` with every trainable parameter.

    Returns:
        A :class:`GradientConflictResult`.
    """
    if len(losses) < 2:
        raise ValueError(f"gradient_conflict needs at least two losses to compare, got {list(losses)}.")
    if param_groups is None:
        param_groups = default_param_groups(model) if hasattr(model, "blocks") else {}
        if not param_groups:
            param_groups = {"all": list(model.parameters())}
    groups = {g: _unique_trainable(ps) for g, ps in param_groups.items()}
    empty = [g for g, ps in groups.items() if not ps]
    if empty:
        raise ValueError(f"Parameter groups {empty} hold no trainable parameters; drop them or unfreeze them.")
    union = _unique_trainable(p for ps in groups.values() for p in ps)
    index = {id(p): i for i, p in enumerate(union)}
    names = list(losses)
    grads: dict[str, dict[str, torch.Tensor]] = {}
    for name in names:
        flat = _flat_grads(losses[name], union)
        grads[name] = {
            g: torch.cat([flat[index[id(p)]].detach().float().reshape(-1) for p in ps]) for g, ps in groups.items()
        }
    return _summarise(grads, names, list(groups))


def objective_pair_cosines(result: GradientConflictResult, group: str) -> dict[str, float | None]:
    """The :data:`PROBE_PAIRS` cosines of one group of a :func:`gradient_conflict` result.

    Args:
        result: a :class:`GradientConflictResult`.
        group: the group to read (e.g. ``"shared_blocks"``).

    Returns:
        ``{"semantic|reconstruction": ..., "reconstruction|topology": ..., "semantic|topology": ...}``; a pair whose
        objectives were not both measured is ``None``.
    """
    if group not in result.cosine:
        raise ValueError(f"group {group!r} was not probed; groups: {sorted(result.cosine)}.")
    measured = set(result.norms[group])
    return {f"{a}|{b}": (result.cos(group, a, b) if a in measured and b in measured else None) for a, b in PROBE_PAIRS}


def block_gradient_cosines(model: nn.Module, losses: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """Cosines of the objectives' gradients over the trainable synergistic-block parameters, every probe pair.

    The released hook's measurement (``PanqiYang1/MUSE muse/utils/train_utils.py:71-121``: the gradients of two
    losses over the trainable parameters of ``muse_blocks``, flattened, cosine), for all :data:`PROBE_PAIRS` at
    once. Uses ``torch.autograd.grad`` only: nothing is written to ``.grad`` and the graph stays usable.

    Args:
        model: a ``MuseTokenizerModel`` (its ``blocks`` / ``recon_blocks``).
        losses: objective name (``"semantic"``, ``"reconstruction"``, ``"topology"``) -> scalar loss; at least two.

    Returns:
        ``{"a|b": cosine or None}`` for every pair of :data:`PROBE_PAIRS` (``None`` where a loss is missing).
    """
    params = shared_block_parameters(model)
    if not params:
        raise ValueError("block_gradient_cosines: the model has no trainable synergistic-block parameters.")
    known = {name: loss for name, loss in losses.items() if name in {n for pair in PROBE_PAIRS for n in pair}}
    result = gradient_conflict(model, known, {"blocks": params})
    return objective_pair_cosines(result, "blocks")


def _block_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(prefix, block)`` for each synergistic block (``blocks`` and, for two_stream, ``recon_blocks``)."""
    found = []
    for attr in ("blocks", "recon_blocks"):
        stack = getattr(model, attr, None)
        if isinstance(stack, nn.ModuleList):
            found.extend((f"{attr}.{i}", block) for i, block in enumerate(stack))
    return found


def default_param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The probe's default parameter groups of a ``MuseTokenizerModel``, selected by parameter name.

    * ``topology``: ``q_topo``, ``k_topo`` and their QK-norms in every synergistic block;
    * ``values``: ``v_sem``, ``v_itc`` (when present) and the out-projection ``o_proj``;
    * ``mlp``: the blocks' MLPs;
    * ``adapter``: the pixel-unshuffle adapter in front of the blocks.

    Groups that come out empty (e.g. a frozen part) are left out.

    Args:
        model: a ``MuseTokenizerModel`` (anything with ``blocks`` holding ``q_topo``/``k_topo``/... works).

    Returns:
        group name -> parameters.
    """
    blocks = _block_modules(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no `blocks` of synergistic blocks; pass param_groups explicitly.")
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in _BLOCK_GROUP_PATTERNS}
    for _, block in blocks:
        for pname, p in block.named_parameters():
            for group, pattern in _BLOCK_GROUP_PATTERNS.items():
                if re.search(pattern, pname):
                    groups[group].append(p)
                    break
    adapter = getattr(model, "adapter", None)
    groups["adapter"] = list(adapter.parameters()) if isinstance(adapter, nn.Module) else []
    return {g: ps for g, ps in groups.items() if _unique_trainable(ps)}


def shared_block_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable parameter of the synergistic blocks (the ``shared block parameters`` of Table 4)."""
    return _unique_trainable(p for _, block in _block_modules(model) for p in block.parameters())


def soft_routing_penalty(
    params: Iterable[nn.Parameter],
    loss_a: torch.Tensor,
    loss_b: torch.Tensor,
    weight: float = 1.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Penalty of ``routing="soft"``: ``weight * cos(grad_a, grad_b) ** 2`` on shared parameters.

    The gradients are taken with ``create_graph=True`` so the penalty itself is differentiable (its
    backward is a second-order pass). Every op between the parameters and the losses must therefore support
    double backward: PyTorch's fused SDPA kernels (flash / memory-efficient) do not, so run a
    ``MuseTokenizerModel`` with ``output_attentions=True`` (its eager attention path) when using this penalty;
    otherwise ``backward`` fails with "derivative for aten::_scaled_dot_product_..._backward is not implemented". Pushing the squared cosine to 0 makes the two objectives' updates
    orthogonal on these parameters without separating them ("Soft Regularization" of Table 4).

    Args:
        params: the shared parameters (e.g. :func:`shared_block_parameters`).
        loss_a: first scalar loss (e.g. semantic NCE).
        loss_b: second scalar loss (e.g. reconstruction).
        weight: multiplier (the training argument ``soft_penalty_weight``).
        eps: added to the norms' product; when either gradient is zero the penalty is 0.

    Returns:
        Scalar penalty (0 with no graph when ``weight == 0``).
    """
    params = _unique_trainable(params)
    if not params:
        raise ValueError("soft_routing_penalty needs at least one trainable shared parameter.")
    if weight == 0:
        return loss_a.new_zeros(())
    ga = torch.cat([g.float().reshape(-1) for g in _flat_grads(loss_a, params, create_graph=True)])
    gb = torch.cat([g.float().reshape(-1) for g in _flat_grads(loss_b, params, create_graph=True)])
    with torch.autocast(device_type=ga.device.type, enabled=False):  # a bf16 dot over millions of terms is noise
        cos = (ga @ gb) / (ga.norm() * gb.norm() + eps)
    return weight * cos.pow(2)
