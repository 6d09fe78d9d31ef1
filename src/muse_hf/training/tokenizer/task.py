"""The MUSE tokenizer curriculum as a :class:`~muse_hf.training.task.TrainingTask` (paper §5.1, app. E.1).

One task serves the three stages; a stage is defined by its loss weights and freezing:

=========  ====================================  ==========================================================
stage      objectives                            trained parameters
=========  ====================================  ==========================================================
1 topology topology KL + reconstruction          everything but the frozen backbone and the semantic stream
2 semantic + semantic NCE                        + ``v_itc``, ``semantic_projector``, logit scale
3 synergy  + GAN, full unfreezing                + ``vision_model`` (``backbone_lr_multiplier``), discriminator
=========  ====================================  ==========================================================

Reconstruction is pixel L2 (+ L1) plus the LPIPS + ConvNeXt perceptual term, in [0, 1] pixel space, in every stage
(the released configs weight the perceptual term 1.1 in stages 1-2 and 2.0 in stage 3); the gradient scale
``lambda_g`` acts on it at the synergistic stack's output (see ``MuseTokenizerConfig.grad_scale``).

What is frozen follows from the arguments, so that every trainable parameter is reached by some loss
(a step changes exactly the trainable set):

* ``vision_model``: ``freeze_vision_backbone`` (None: the model config's value);
* semantic stream (``v_itc``, ``semantic_projector``, logit scale): when ``semantic_weight == 0``;
* ``q_topo``/``k_topo`` (+ QK-norms) of a block: in ``decoupled`` routing when the topology loss does not
  reach it (``topology_weight == 0`` or the block is not in ``topology_layers``);
* reconstruction path (``norm``, ``to_latent``, ``decoder``): when ``reconstruction_weight == 0``.

Teachers and the text embedder run in eval mode under ``no_grad`` and are never prepared or saved.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from muse_hf.data import load_image_text_stream, make_dataloader
from muse_hf.evaluation.saved import evaluate_saved_tokenizer
from muse_hf.hub import write_model_card
from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.objectives import (
    AdversarialLoss,
    LogitScale,
    MaskAffinityTeacher,
    PatchDiscriminator,
    ReconstructionLoss,
    StructuralTeacher,
    block_gradient_cosines,
    default_param_groups,
    load_perceptual_loss,
    load_text_embedder,
    semantic_nce_loss,
    shared_block_parameters,
    soft_routing_penalty,
    topology_alignment_loss,
)
from muse_hf.training.optim import grouped_parameters
from muse_hf.training.stream import EndlessLoader
from muse_hf.training.task import StepOutput, TrainingTask
from muse_hf.training.tokenizer.arguments import TokenizerTrainingArguments
from muse_hf.training.tokenizer.feature_cache import FrozenFeatureCache, frozen_cache_key, teacher_is_frozen_backbone
from muse_hf.validation import unknown_key_message

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["DiscriminatorModule", "TokenizerTask", "TokenizerTrainModule", "soft_penalty_weight", "training_teacher"]

logger = logging.getLogger(__name__)

LOGIT_SCALE_FILE = "logit_scale.safetensors"
DEFAULT_SOFT_PENALTY_WEIGHT = 0.1
_TOPOLOGY_PARAM = re.compile(r"^(q_topo|k_topo|q_norm|k_norm)\.")


def soft_penalty_weight(args: TokenizerTrainingArguments, config: Any) -> float:
    """The ``routing: soft`` penalty weight: the training argument, else what a model config saved before it moved
    to the arguments carries (``soft_penalty_weight`` in its ``config.json``), else 0.1."""
    if args.soft_penalty_weight is not None:
        return float(args.soft_penalty_weight)
    return float(getattr(config, "soft_penalty_weight", DEFAULT_SOFT_PENALTY_WEIGHT))


class TokenizerTrainModule(nn.Module):
    """The tokenizer plus the loss parameters trained with it (the NCE logit scale): one DDP unit.

    Its ``forward`` runs the tokenizer, so under DDP every trained parameter is reached through the
    wrapper's forward and gradients are synchronised.
    """

    def __init__(self, tokenizer: nn.Module, logit_scale: nn.Module | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.logit_scale = logit_scale

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool,
        output_semantic: bool,
        decode: bool,
        vision_features: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Encode (and decode) ``pixel_values`` (B, 3, H, W); ``vision_features``: precomputed backbone tokens.

        Returns:
            ``{"sample": (B, 3, H, W) | None, "latents": (B, c, h, w), "attentions": tuple | None,
            "semantic_embeds": (B, d) | None, "logit_scale": scalar | None}``.
        """
        enc = self.tokenizer.encode(
            pixel_values,
            output_attentions=output_attentions,
            output_semantic=output_semantic,
            vision_features=vision_features,
        )
        sample = None
        if decode:
            sample = self.tokenizer.decode(enc.latents, output_size=tuple(pixel_values.shape[-2:])).sample
        return {
            "sample": sample,
            "latents": enc.latents,
            "attentions": enc.attentions,
            "semantic_embeds": enc.semantic_embeds,
            "logit_scale": self.logit_scale() if self.logit_scale is not None and output_semantic else None,
        }


class DiscriminatorModule(nn.Module):
    """Wraps :class:`~muse_hf.objectives.AdversarialLoss` so its discriminator step runs through ``forward``
    (DDP-synchronised); the generator term uses ``adversarial.generator_loss`` directly, which does not
    write gradients into the discriminator."""

    def __init__(self, adversarial: nn.Module) -> None:
        super().__init__()
        self.adversarial = adversarial

    def forward(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Discriminator loss terms for real ``(B, 3, H, W)`` and (detached) fake images."""
        return self.adversarial.discriminator_loss(real, fake, step)


def _attention_grid(attention: torch.Tensor, latents: torch.Tensor) -> tuple[int, int]:
    """Token grid of a block attention map ``(B, heads, N, N)``: the latent grid, or the backbone grid
    (2x finer) for ``placement="replace_last"``."""
    n = attention.shape[-1]
    h, w = latents.shape[-2:]
    if n == h * w:
        return int(h), int(w)
    if n == 4 * h * w:
        return int(2 * h), int(2 * w)
    raise ValueError(
        f"Cannot infer the token grid of an attention map over {n} tokens with latents {tuple(latents.shape)}."
    )


def training_teacher(args: TokenizerTrainingArguments) -> nn.Module:
    """The structural teacher a stage's arguments name (``teacher``, ``teacher_layers``)."""
    if args.teacher == "mask_affinity":
        return MaskAffinityTeacher()
    return StructuralTeacher.from_pretrained(args.teacher, layers=tuple(args.teacher_layers)).eval()


class TokenizerTask(TrainingTask):
    """Trains a ``MuseTokenizerModel`` stage (see module docstring)."""

    args: TokenizerTrainingArguments

    def __init__(self, args: TokenizerTrainingArguments) -> None:
        super().__init__(args)
        self.tokenizer: nn.Module | None = None
        self.image_processor: Any = None
        self.train_module: TokenizerTrainModule | None = None
        self.discriminator_module: DiscriminatorModule | None = None
        self.adversarial: nn.Module | None = None
        self.teacher: nn.Module | None = None
        self.teacher_is_backbone = False
        self.feature_cache: FrozenFeatureCache | None = None
        self.text_embedder: Any = None
        self.reconstruction: nn.Module | None = None
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ build
    def _build_tokenizer(self) -> nn.Module:

        a = self.args
        overrides = dict(a.model_overrides)
        if a.init_from is not None:
            config = MuseTokenizerConfig.from_pretrained(a.init_from)
            _merge_config(config, overrides)
            model = MuseTokenizerModel.from_pretrained(a.init_from, config=config)
        elif a.vision_model_name_or_path is not None:
            model = MuseTokenizerModel.from_pretrained_components(
                vision=a.vision_model_name_or_path,
                decoder=a.decoder_name_or_path,
                preset=a.model_preset,
                **overrides,
            )
        else:
            model = MuseTokenizerModel(MuseTokenizerConfig.from_preset(a.model_preset, **overrides))
        return model

    def _build_image_processor(self) -> Any:

        size = {"height": self.args.resolution, "width": self.args.resolution}
        if self.args.init_from is not None and (Path(self.args.init_from) / "preprocessor_config.json").is_file():
            return MuseImageProcessor.from_pretrained(self.args.init_from, size=size)
        return MuseImageProcessor(size=size)

    def _apply_freezing(self, model: nn.Module) -> None:
        a = self.args
        cfg = model.config
        model.requires_grad_(True)
        freeze_backbone = cfg.freeze_vision_backbone if a.freeze_vision_backbone is None else a.freeze_vision_backbone
        cfg.freeze_vision_backbone = bool(freeze_backbone)
        if freeze_backbone:
            model.vision_model.requires_grad_(False)
        if a.semantic_weight == 0:
            model.semantic_projector.requires_grad_(False)
            for block in model.blocks:
                if getattr(block, "v_itc", None) is not None:
                    block.v_itc.requires_grad_(False)
        if cfg.routing == "decoupled":
            topo_layers = set(cfg.topology_layers) if a.topology_weight > 0 else set()
            for i, block in enumerate(model.blocks):
                if i not in topo_layers:
                    for name, p in block.named_parameters():
                        if _TOPOLOGY_PARAM.match(name):
                            p.requires_grad_(False)
        if a.reconstruction_weight == 0:
            for part in (model.norm, model.to_latent, model.decoder):
                part.requires_grad_(False)
            if getattr(model, "recon_blocks", None) is not None:
                model.recon_blocks.requires_grad_(False)

    def build(self, accelerator: Accelerator) -> None:  # noqa: D102

        a = self.args
        self.device = accelerator.device
        tokenizer = self._build_tokenizer()
        self._apply_freezing(tokenizer)
        self.tokenizer = tokenizer
        self.image_processor = self._build_image_processor()

        logit_scale = None
        if a.semantic_weight > 0:
            logit_scale = LogitScale(init=a.logit_scale_init)
            saved = Path(a.init_from) / LOGIT_SCALE_FILE if a.init_from is not None else None
            if saved is not None and saved.is_file():
                logit_scale.load_state_dict(load_file(str(saved)))

            self.text_embedder = load_text_embedder(a.text_encoder, device=self.device)
            if self.text_embedder.dim != tokenizer.config.semantic_dim:
                raise ValueError(
                    f"The text embedder ({a.text_encoder or 'packaged all-MiniLM-L6-v2'}) gives {self.text_embedder.dim}-d "
                    f"embeddings but the tokenizer's semantic_dim is {tokenizer.config.semantic_dim}; set "
                    "--model_overrides.semantic_dim to match or pick another --text_encoder."
                )
        self.train_module = TokenizerTrainModule(tokenizer, logit_scale)

        if a.topology_weight > 0:
            self.teacher = self._build_teacher().to(self.device).eval()
            self.teacher_is_backbone = teacher_is_frozen_backbone(self.teacher, tokenizer, self.image_processor)
            if self.teacher_is_backbone:
                logger.info(
                    "The structural teacher is the frozen backbone itself (identical weights, same input): "
                    "one forward pass serves both."
                )
        if a.cache_frozen_features:
            if self.teacher_is_backbone:
                self.feature_cache = FrozenFeatureCache.shared(
                    frozen_cache_key(self.teacher, tokenizer.config.feature_layers, a.resolution, a.text_encoder),
                    a.frozen_feature_cache_max_samples,
                )
            else:
                logger.warning(
                    "cache_frozen_features is on but the structural teacher is not the frozen backbone (or the "
                    "topology loss is off): nothing is cached in this stage."
                )
        if a.reconstruction_weight > 0:
            perceptual = None
            if a.perceptual_weight > 0:  # None (and one logged line) when its networks are not on this machine
                perceptual = load_perceptual_loss(
                    a.perceptual_model,
                    lpips=a.perceptual_lpips,
                    lpips_weight=a.perceptual_lpips_weight,
                    convnext_weight=a.perceptual_convnext_weight,
                )
            # L1/L2 (and the perceptual term) in [0, 1] pixel space: PanqiYang1/MUSE muse/losses/muse_loss.py:137-164
            processor = self.image_processor
            normalized = bool(getattr(processor, "do_normalize", True))
            self.reconstruction = ReconstructionLoss(
                l2_weight=a.recon_l2_weight,
                l1_weight=a.recon_l1_weight,
                perceptual_weight=a.perceptual_weight if perceptual is not None else 0.0,
                perceptual_model=perceptual,
                input_mean=list(processor.image_mean) if normalized else None,
                input_std=list(processor.image_std) if normalized else None,
            ).to(self.device)
            self.reconstruction.requires_grad_(False)
            self.reconstruction.eval()
        if a.gan_weight > 0:
            self.adversarial = AdversarialLoss(
                PatchDiscriminator(base_channels=a.discriminator_channels, num_layers=a.discriminator_layers),
                start_step=a.gan_start_step,
                weight=a.gan_weight,
                adaptive=a.gan_adaptive_weight,
                lecam_weight=a.lecam_weight,
                lecam_decay=a.lecam_decay,
            )
            self.discriminator_module = DiscriminatorModule(self.adversarial)

    def _build_teacher(self) -> nn.Module:
        return training_teacher(self.args)

    # ------------------------------------------------------------------ contract
    def modules(self) -> dict[str, nn.Module]:  # noqa: D102
        assert self.train_module is not None, "call build() first"
        mods: dict[str, nn.Module] = {"model": self.train_module}
        if self.discriminator_module is not None:
            mods["discriminator"] = self.discriminator_module
        for module in mods.values():  # from_pretrained (init_from) leaves models in eval mode
            module.train()
        return mods

    def param_groups(self, name: str, module: nn.Module) -> list[dict[str, Any]]:  # noqa: D102
        a = self.args
        if name == "discriminator":
            scale = (a.discriminator_lr / a.learning_rate) if a.discriminator_lr is not None else 1.0
            return [{"name": "discriminator", "params": list(module.parameters()), "lr_scale": scale}]
        return grouped_parameters(  # biases, norms, logit scale (ndim < 2): no weight decay
            module.named_parameters(),
            part_of=lambda n: n.split(".")[1] if n.startswith("tokenizer.") else n.split(".")[0],
            lr_scales={"vision_model": a.backbone_lr_multiplier},
        )

    def ema_module(self) -> nn.Module | None:  # noqa: D102
        return self.tokenizer

    def grad_norm_groups(self) -> dict[str, list[nn.Parameter]]:  # noqa: D102
        assert self.tokenizer is not None
        groups = {f"blocks.{k}": v for k, v in default_param_groups(self.tokenizer).items()}
        for part in ("vision_model", "decoder", "semantic_projector", "to_latent"):
            params = [p for p in getattr(self.tokenizer, part).parameters() if p.requires_grad]
            if params:
                groups[part] = params
        if self.discriminator_module is not None:
            groups["discriminator"] = list(self.discriminator_module.parameters())
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items() if any(p.requires_grad for p in v)}

    def open_dataset(self, split: str, accelerator: Accelerator | None = None) -> Any:
        """This process's shard of ``train_data``/``split`` (``muse_hf.data.load_image_text_stream``)."""

        a = self.args
        return load_image_text_stream(
            a.train_data,
            split=split,
            image_processor=self.image_processor,
            image_column=a.image_column,
            caption_column=a.caption_column,
            shuffle_buffer=a.shuffle_buffer_size,
            seed=a.seed,
            accelerator=accelerator,
        )

    def train_stream(self, accelerator: Accelerator) -> EndlessLoader:  # noqa: D102

        a = self.args
        loader = make_dataloader(
            self.open_dataset(a.train_split, accelerator),
            a.train_batch_size,
            num_workers=a.dataloader_num_workers,
            drop_last=True,
            pin_memory=accelerator.device.type == "cuda",
        )
        return EndlessLoader(loader)

    # ------------------------------------------------------------------ step
    def training_step(self, modules: dict[str, nn.Module], batch: dict[str, Any], step: int) -> StepOutput:  # noqa: D102

        a = self.args
        pixel_values = batch["pixel_values"]  # (B, 3, H, W)
        want_topo, want_sem, want_rec = (
            a.topology_weight > 0,
            a.semantic_weight > 0,
            a.reconstruction_weight > 0,
        )
        # the soft-routing penalty differentiates twice: fused SDPA has no double backward, the eager path does
        eager = want_topo or self.tokenizer.config.routing == "soft"
        target = vision_features = None
        if want_topo and self.teacher_is_backbone:  # one backbone pass gives the teacher map and the features
            r = self.tokenizer.config.spatial_compression_ratio
            grid = (pixel_values.shape[-2] // r, pixel_values.shape[-1] // r)
            layers = self.tokenizer.config.feature_layers

            def shared_pass(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return self.teacher(
                    self.image_processor.to_unit_range(pixels.float()),
                    grid_size=grid,
                    return_patch_tokens=True,
                    feature_layers=layers,
                )

            if self.feature_cache is not None:
                target, vision_features = self.feature_cache.lookup(pixel_values, shared_pass)
            else:
                target, vision_features = shared_pass(pixel_values)
        out = modules["model"](
            pixel_values,
            output_attentions=eager,
            output_semantic=want_sem,
            decode=want_rec,
            vision_features=vision_features,
        )
        total = pixel_values.new_zeros((), dtype=torch.float32)
        logs: dict[str, torch.Tensor | float] = {}
        losses: dict[str, torch.Tensor] = {}
        named: dict[str, torch.Tensor] = {}

        if want_topo:
            grid = _attention_grid(out["attentions"][0], out["latents"])
            with torch.no_grad():
                if target is not None:
                    pass  # computed above with the backbone features
                elif self.args.teacher == "mask_affinity":
                    if "mask" not in batch:
                        raise ValueError(
                            "teacher='mask_affinity' needs instance masks ('mask' column) in the training data; "
                            "use a ViT teacher (--teacher facebook/dinov2-small) for data without masks."
                        )
                    target = self.teacher(batch["mask"], grid)  # (B, 1, N, N)
                else:
                    target = self.teacher(self.image_processor.to_unit_range(pixel_values.float()), grid_size=grid)
            topo = topology_alignment_loss(out["attentions"], target, head_reduction=a.topology_head_reduction)
            named["topology"] = topo
            total = total + a.topology_weight * topo
        if want_sem:
            with torch.no_grad():
                if self.feature_cache is not None:
                    text = self.feature_cache.embed_texts(batch["caption"], self.text_embedder.embed)
                else:
                    text = self.text_embedder.embed(batch["caption"])
                text = text.to(out["semantic_embeds"].device)  # (B, d)
            nce = semantic_nce_loss(
                out["semantic_embeds"],
                text,
                out["logit_scale"],
                captions=batch["caption"],
                gather=a.nce_gather,
            )
            named["semantic"] = nce
            logs["logit_scale"] = out["logit_scale"].detach()
            total = total + a.semantic_weight * nce
        if want_rec:
            sample = out["sample"]  # (B, 3, H, W)
            rec = self.reconstruction(sample, pixel_values)
            named["reconstruction"] = rec["loss"]
            terms = ("l1", "l2", "perceptual") if self.reconstruction.perceptual is not None else ("l1", "l2")
            for key in terms:  # no loss/perceptual when the term is off (load_perceptual_loss logged why)
                logs[f"loss/{key}"] = rec[key].detach()
            total = total + a.reconstruction_weight * rec["loss"]
            if self.adversarial is not None and self.adversarial.is_active(step):
                # the discriminator sees [0, 1] images, as released (muse_loss.py:166-174, 226-245)
                fake01 = self.reconstruction.to_unit_range(sample)
                real01 = self.reconstruction.to_unit_range(pixel_values)
                decoder = self.train_module.tokenizer.decoder
                g_loss = self.adversarial.generator_loss(
                    fake01, step, reconstruction_loss=rec["loss"], last_layer=_last_decoder_weight(decoder)
                )
                named["generator"] = g_loss
                total = total + g_loss
                d = modules["discriminator"](real01, fake01.detach(), step)
                losses["discriminator"] = d["loss"]
                logs["loss/discriminator"] = d["loss"].detach()
                logs["gan/logits_real"] = d["logits_real"]
                logs["gan/logits_fake"] = d["logits_fake"]
        if self.tokenizer.config.routing == "soft" and "semantic" in named and "reconstruction" in named:
            penalty = soft_routing_penalty(
                shared_block_parameters(self.tokenizer),
                named["semantic"],
                named["reconstruction"],
                weight=soft_penalty_weight(a, self.tokenizer.config),
            )
            named["soft_penalty"] = penalty
            total = total + penalty

        if a.gradient_probe_steps > 0 and (step + 1) % a.gradient_probe_steps == 0:
            logs.update(self._probe_gradients(named, rec["pixel"] if want_rec else None))
        for key, value in named.items():
            logs[f"loss/{key}"] = value.detach()
        logs["loss"] = total.detach()
        losses = {"model": total, **losses}
        return StepOutput(losses=losses, logs=logs, num_samples=int(pixel_values.shape[0]))

    def _probe_gradients(self, named: dict[str, torch.Tensor], pixel_loss: torch.Tensor | None) -> dict[str, float]:
        """Cosines between the objectives' gradients on the synergistic blocks, as ``grad_cos/<a>|<b>`` logs.

        The released training hook (``PanqiYang1/MUSE muse/utils/train_utils.py:71-121``) measures
        cos(reconstruction, topology) in stage 1 and cos(semantic, topology) in stages 2-3 over the trainable
        ``muse_blocks`` parameters, with the pixel loss as "reconstruction" (``muse_loss.py:217-220``); this logs every
        pair of ``PROBE_PAIRS`` that the stage's losses allow. ``autograd.grad`` only: training is unchanged.
        """

        losses = {k: named[k] for k in ("topology", "semantic") if k in named}
        if pixel_loss is not None:
            losses["reconstruction"] = pixel_loss
        if len(losses) < 2:
            return {}
        pairs = block_gradient_cosines(self.tokenizer, losses)
        return {f"grad_cos/{pair}": value for pair, value in pairs.items() if value is not None}

    # ------------------------------------------------------------------ output
    def save_pretrained(
        self, accelerator: Accelerator, modules: dict[str, nn.Module], output_dir: str | os.PathLike
    ) -> None:  # noqa: D102

        state = accelerator.get_state_dict(modules["model"])  # gathers shards under FSDP / ZeRO-3
        if not accelerator.is_main_process:
            return
        unwrapped = accelerator.unwrap_model(modules["model"])
        prefix = "tokenizer."
        tok_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        unwrapped.tokenizer.save_pretrained(output_dir, state_dict=tok_state, safe_serialization=True)
        self.image_processor.save_pretrained(output_dir)
        if unwrapped.logit_scale is not None:
            scale = {
                k[len("logit_scale.") :]: v.detach().cpu().contiguous()
                for k, v in state.items()
                if k.startswith("logit_scale.")
            }
            save_file(scale, str(Path(output_dir) / LOGIT_SCALE_FILE))

    def evaluate(self, output_dir: str | os.PathLike) -> dict[str, float]:  # noqa: D102
        if not self.args.evaluate_at_end:
            return {}

        return evaluate_saved_tokenizer(
            output_dir,
            self.args.train_data,
            self.args.eval_split,
            Path(output_dir) / "eval",
            teacher=self.teacher if self.args.teacher != "mask_affinity" else None,
        )

    def write_model_card(
        self, output_dir: str | os.PathLike, metrics: dict[str, float], summary: dict[str, Any]
    ) -> None:  # noqa: D102

        a = self.args
        settings = {
            **self.card_settings(summary),
            "base_model": a.vision_model_name_or_path or a.init_from,
            "datasets": a.train_data,
        }
        write_model_card("tokenizer", output_dir, metrics=metrics or None, settings=settings, repo_id=a.hub_model_id)


def _merge_config(config: Any, overrides: dict[str, Any]) -> None:
    """Apply ``model_overrides`` to a loaded config: nested dicts are merged into dict fields and into
    sub-configs, so a curriculum's shared overrides (given for building stage 1) leave a saved model's
    architecture as it is while per-stage fields (``grad_scale``, ``spectral_filter_alpha``...) change.

    Raises:
        ValueError: for a key the config does not have.
    """
    for key, value in overrides.items():
        if not hasattr(config, key):
            fields = [f.name for f in dataclasses.fields(config)]
            raise ValueError(
                f"model_overrides.{key}: MuseTokenizerConfig has no field {unknown_key_message(key, fields)}."
            )
        current = getattr(config, key)
        if isinstance(value, dict) and isinstance(current, dict):
            setattr(config, key, {**current, **value})
        elif isinstance(value, dict) and hasattr(current, "to_dict"):
            for sub_key, sub_value in value.items():
                setattr(current, sub_key, sub_value)
        else:
            setattr(config, key, value)


def _last_decoder_weight(decoder: nn.Module) -> torch.Tensor:
    """The decoder's final conv weight (for the adaptive GAN weight)."""
    conv_out = decoder.conv_out
    return conv_out.weight if hasattr(conv_out, "weight") else conv_out.conv.weight
