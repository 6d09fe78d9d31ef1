"""The MUSE unified model (UMM) curriculum as a :class:`~muse_hf.training.task.TrainingTask` (paper §5.1, app. B.2).

Three stages, UniLIP's protocol, on the shared Accelerate loop (checkpoints, resume, EMA, logging, model card,
Hub push all come from :mod:`muse_hf.training.loop`); a stage is defined by what it trains and its data:

=========  ===============================================  ===============================================
stage      trained parameters                               data
=========  ===============================================  ===============================================
1 align    connector + learnable queries (DiT, MLLM frozen)  text-to-image (``edit_ratio: 0``)
2 joint    + the whole DiT                                   generation / editing mixture (``edit_ratio``)
3 SFT      connector + DiT (full, or LoRA adapters via peft) instruction data, generation and editing
=========  ===============================================  ===============================================

The MLLM (or the plain text encoder of the offline default) and the MUSE tokenizer (``vae``) are always
frozen. The objective is flow matching (paper eq. 6, :func:`muse_hf.pipelines.flow_matching_loss`) with
logit-normal timesteps and condition dropout (10%) for classifier-free guidance.

What is frozen follows from the arguments so that every trainable parameter is reached by a loss:
``connector.reference_proj`` (the reference-image tokens of the text-encoder editing path) trains only when
the stage sees editing samples (``edit_ratio > 0``).

Batches mix generation and editing at a fixed ratio inside every batch (``round(edit_ratio * batch)`` editing
samples from the editing stream, the rest from the image-caption stream), so every step reaches the same
parameters (DDP needs no ``find_unused_parameters``) and the mixture's position resumes exactly.

With ``cache_latents: true`` (text condition encoders) the frozen tokenizer and text encoder run once per sample,
before training, and the steps read their stored outputs (:mod:`muse_hf.training.umm.cache`): the same batches, noise
and losses as the uncached run, without decoding images or running either frozen model.

Every stage saves a complete :class:`~muse_hf.pipelines.MusePipeline` (``MusePipeline.from_pretrained(out)``);
a LoRA stage also saves its adapter the peft way (``<out>/transformer_lora``: ``adapter_config.json`` +
``adapter_model.safetensors``, base = the ``init_from`` pipeline's transformer) and the pipeline with the
adapter merged. :func:`load_lora_transformer` / :func:`apply_lora_adapter` (:mod:`muse_hf.training.umm.lora`) load an
adapter back.

The latent ``scaling_factor`` / ``shift_factor`` of the tokenizer are measured from data with
:func:`compute_and_store_latent_scaling` (:mod:`muse_hf.training.umm.scaling`; ``muse-hf compute-scaling --model PATH
--data PATH``), which writes them into the tokenizer's ``config.json``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SanaTransformer2DModel
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from muse_hf.compat import moved_attribute
from muse_hf.data import (
    StreamOptions,
    load_edit_stream,
    load_image_text_stream,
    load_tensor_stream,
    make_dataloader,
)
from muse_hf.evaluation.saved import evaluate_saved_pipeline
from muse_hf.hub import write_model_card
from muse_hf.models import MuseTokenizerModel
from muse_hf.models.connector import MuseConnector
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.pipelines import (
    MuseCondition,
    MusePipeline,
    build_condition_encoder,
    load_default_text_encoder,
)
from muse_hf.training.loop import is_sharded
from muse_hf.training.optim import grouped_parameters
from muse_hf.training.stream import EndlessLoader
from muse_hf.training.task import StepOutput, TrainingTask
from muse_hf.training.umm.arguments import UMMTrainingArguments
from muse_hf.training.umm.cache import cache_key, default_cache_root, prepare_cached_part, stack_condition
from muse_hf.training.umm.lora import LORA_DIR, apply_lora_adapter, is_peft, load_lora_transformer
from muse_hf.training.umm.modules import MixtureStream, UMMTrainModule
from muse_hf.training.umm.scaling import compute_and_store_latent_scaling
from muse_hf.validation import is_hub_id

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "UMMTrainingArguments",
    "UMMTask",
    "UMMTrainModule",
    "MixtureStream",
    "LORA_DIR",
    "load_lora_transformer",
    "apply_lora_adapter",
    "compute_and_store_latent_scaling",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- task
class UMMTask(TrainingTask):
    """Trains one stage of the unified model (see the module docstring)."""

    args: UMMTrainingArguments

    def __init__(self, args: UMMTrainingArguments) -> None:
        super().__init__(args)
        self.vae: nn.Module | None = None
        self.mllm: nn.Module | None = None
        self.processor: Any = None
        self.scheduler: Any = None
        self.image_processor: Any = None
        self.condition_encoder: Any = None
        self.train_module: UMMTrainModule | None = None
        self.accelerator: Accelerator | None = None
        self.device = torch.device("cpu")
        self.process_index = 0
        self._micro: tuple[int, int] = (-1, 0)

    # ------------------------------------------------------------------ build
    def _load_components(self) -> dict[str, Any]:
        """The pipeline's components: from ``init_from`` or built from the arguments."""

        a = self.args
        size = {"height": a.resolution, "width": a.resolution}
        if a.init_from is not None:
            pipe = MusePipeline.from_pretrained(a.init_from)
            image_processor = pipe.muse_image_processor
            image_processor.size = size
            return {
                "mllm": pipe.mllm, "processor": pipe.processor, "connector": pipe.connector,
                "transformer": pipe.transformer, "scheduler": pipe.scheduler, "vae": pipe.vae,
                "image_processor": image_processor,
            }  # fmt: skip
        vae = MuseTokenizerModel.from_pretrained(a.tokenizer_name_or_path)
        if (Path(a.tokenizer_name_or_path) / "preprocessor_config.json").is_file() or is_hub_id(
            a.tokenizer_name_or_path
        ):
            image_processor = MuseImageProcessor.from_pretrained(a.tokenizer_name_or_path, size=size)
        else:
            image_processor = MuseImageProcessor(size=size)
        if float(vae.config.scaling_factor) == 1.0 and float(vae.config.shift_factor) == 0.0:
            logger.warning(
                "The tokenizer %s has scaling_factor 1 and shift_factor 0 (never measured): the DiT will see "
                "unnormalised latents. Run `muse-hf compute-scaling --model %s --data "
                "<data>` first.", a.tokenizer_name_or_path, a.tokenizer_name_or_path,
            )  # fmt: skip
        mllm, processor = _load_condition_encoder(a.condition_encoder_name_or_path)
        encoder = build_condition_encoder(mllm, processor, image_processor)
        transformer = self._build_transformer(vae)
        connector = self._build_connector(mllm, encoder, transformer, vae)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=a.scheduler_shift)
        return {
            "mllm": mllm, "processor": processor, "connector": connector, "transformer": transformer,
            "scheduler": scheduler, "vae": vae, "image_processor": image_processor,
        }  # fmt: skip

    def _build_transformer(self, vae: nn.Module) -> nn.Module:

        a = self.args
        channels = int(vae.config.latent_channels)
        if a.transformer_name_or_path is not None:
            path = a.transformer_name_or_path
            local = Path(path)
            subfolder = (
                "transformer" if (local / "transformer").is_dir() or (not local.exists() and is_hub_id(path)) else None
            )
            transformer = SanaTransformer2DModel.from_pretrained(path, subfolder=subfolder)
        else:
            factor = int(vae.config.spatial_compression_ratio)
            cfg = {"in_channels": channels, "out_channels": channels, "sample_size": a.resolution // factor,
                   "patch_size": 1, **a.transformer_config}  # fmt: skip
            transformer = SanaTransformer2DModel(**cfg)
        tc = transformer.config
        if int(tc.in_channels) != channels or int(tc.out_channels or tc.in_channels) != channels:
            raise ValueError(
                f"The DiT takes {tc.in_channels} and predicts {tc.out_channels} latent channels but the tokenizer has "
                f"{channels}; set transformer_config in_channels/out_channels to {channels} (or use a tokenizer with "
                f"{tc.in_channels} latent channels)."
            )
        return transformer

    def _build_connector(self, mllm: nn.Module, encoder: Any, transformer: nn.Module, vae: nn.Module) -> nn.Module:

        a = self.args
        use_ref = a.connector_reference_latents
        if use_ref is None:
            use_ref = not encoder.supports_images
        ref_channels = int(vae.config.latent_channels) if use_ref else None
        caption = int(transformer.config.caption_channels)
        cfg = dict(a.connector_config)
        if encoder.supports_images and a.connector_from_llm:
            return MuseConnector.from_llm_layers(
                mllm,
                int(cfg.get("num_layers", 6)),
                caption_channels=caption,
                num_queries=int(cfg.get("num_queries", 256)),
                reference_channels=ref_channels,
            )
        dim = int(encoder.condition_dim)
        defaults = {"hidden_size": dim, "num_attention_heads": max(1, dim // 64)}
        return MuseConnector(
            **{
                **defaults,
                **cfg,
                "condition_dim": dim,
                "caption_channels": caption,
                "reference_channels": ref_channels,
            }
        )

    def _lora_config(self) -> Any:

        a = self.args
        return LoraConfig(
            r=a.lora_rank,
            lora_alpha=a.lora_alpha,
            lora_dropout=a.lora_dropout,
            target_modules=list(a.lora_target_modules),
            init_lora_weights=True,  # B = 0: the stage starts exactly at init_from's DiT
        )

    def _apply_stage(self, connector: nn.Module, transformer: nn.Module) -> nn.Module:
        """Freeze what this stage does not train; returns the DiT (wrapped by peft for LoRA)."""
        a = self.args
        connector.requires_grad_(a.train_connector)
        if a.train_connector and a.edit_ratio == 0 and getattr(connector, "reference_proj", None) is not None:
            connector.reference_proj.requires_grad_(False)  # no editing sample reaches it this stage
        transformer.requires_grad_(a.train_transformer == "full")
        if a.gradient_checkpointing:  # also in stage 1: the connector's gradient flows back through the DiT
            transformer.enable_gradient_checkpointing()
        if a.train_transformer == "lora":
            transformer = get_peft_model(transformer, self._lora_config())  # base frozen, adapters trainable
            if a.init_from is not None:
                transformer.peft_config["default"].base_model_name_or_path = str(Path(a.init_from) / "transformer")
        return transformer

    def build(self, accelerator: Accelerator) -> None:  # noqa: D102

        a = self.args
        self.accelerator = accelerator
        self.device = accelerator.device
        self.process_index = int(accelerator.process_index)
        parts = self._load_components()
        self.vae = parts["vae"].to(self.device).eval().requires_grad_(False)
        self.mllm = parts["mllm"].to(self.device).eval().requires_grad_(False)
        self.processor = parts["processor"]
        self.scheduler = parts["scheduler"]
        self.image_processor = parts["image_processor"]
        factor = int(self.vae.config.spatial_compression_ratio) * int(parts["transformer"].config.patch_size)
        if a.resolution % factor:
            raise ValueError(
                f"resolution={a.resolution} must be a multiple of {factor} (the tokenizer's compression times the DiT "
                "patch size)."
            )
        self.condition_encoder = build_condition_encoder(self.mllm, self.processor, self.image_processor)
        if a.cache_latents and self.condition_encoder.supports_images:
            raise ValueError(
                "cache_latents needs a text condition encoder: with an image-aware mllm (InternVL) the learnable "
                "queries pass through the frozen LLM, so the condition changes with every step and cannot be cached. "
                "Set cache_latents: false for this mllm."
            )
        connector = parts["connector"]
        if (
            a.edit_ratio > 0
            and connector.config.reference_channels is None
            and not self.condition_encoder.supports_images
        ):
            raise ValueError(
                "edit_ratio > 0 but this pipeline cannot edit: its mllm is text-only and its connector has no "
                "reference_channels. Build stage 1 with connector_reference_latents: true (the default for text "
                "encoders)."
            )
        transformer = self._apply_stage(connector, parts["transformer"])
        self.train_module = UMMTrainModule(
            connector,
            transformer,
            self.condition_encoder,
            num_train_timesteps=int(self.scheduler.config.num_train_timesteps),
            condition_dropout=a.condition_dropout,
            logit_mean=a.logit_mean,
            logit_std=a.logit_std,
        )
        self.train_module.train()  # from_pretrained leaves models in eval mode (LoRA dropout needs train mode)
        trainable = sum(p.numel() for p in self.train_module.parameters() if p.requires_grad)
        logger.info("Stage %s trains %d parameters (connector=%s, transformer=%s).", a.stage_name, trainable,
                    a.train_connector, a.train_transformer)  # fmt: skip

    # ------------------------------------------------------------------ contract
    def modules(self) -> dict[str, nn.Module]:  # noqa: D102
        assert self.train_module is not None, "call build() first"
        return {"model": self.train_module}

    def param_groups(self, name: str, module: nn.Module) -> list[dict[str, Any]]:  # noqa: D102
        a = self.args
        return grouped_parameters(
            module.named_parameters(),
            part_of=lambda n: n.split(".")[0],  # connector | transformer
            lr_scales={"transformer": a.transformer_lr_multiplier},
            no_decay=lambda n, p: p.ndim < 2 or n.endswith("query_embeds"),  # biases, norms, queries
        )

    def train_stream(self, accelerator: Accelerator) -> MixtureStream:  # noqa: D102

        a = self.args
        n_edit = round(a.edit_ratio * a.train_batch_size)
        n_gen = a.train_batch_size - n_edit
        pin = accelerator.device.type == "cuda"
        if a.cache_latents:
            return self._cached_stream(accelerator, n_gen, n_edit, pin)
        gen = edit = None
        if n_gen > 0:
            stream = load_image_text_stream(
                a.train_data, split=a.train_split, image_processor=self.image_processor,
                image_column=a.image_column, caption_column=a.caption_column, with_label=False, with_mask=False,
                options=self._stream_options(accelerator, a.seed),
            )  # fmt: skip
            gen = EndlessLoader(make_dataloader(stream, n_gen, num_workers=a.dataloader_num_workers, drop_last=True,
                                                pin_memory=pin))  # fmt: skip
        if n_edit > 0:
            stream = load_edit_stream(
                a.edit_data or a.train_data, split=a.edit_split or a.train_split, image_processor=self.image_processor,
                source_column=a.source_column, target_column=a.target_column, instruction_column=a.instruction_column,
                options=self._stream_options(accelerator, a.seed + 1),
            )  # fmt: skip
            edit = EndlessLoader(make_dataloader(stream, n_edit, num_workers=a.dataloader_num_workers, drop_last=True,
                                                 pin_memory=pin))  # fmt: skip
        return MixtureStream(gen, edit)

    def _stream_options(self, accelerator: Accelerator, seed: int) -> StreamOptions:
        """How every training stream (images or cached tensors) is read: the run's shuffle buffer, ``seed`` (gen:
        ``args.seed``, edit: ``args.seed + 1``) and this process's share of the shards."""
        return StreamOptions(shuffle_buffer=self.args.shuffle_buffer_size, seed=seed, accelerator=accelerator)

    def prepare_cache(self, accelerator: Accelerator, parts: Sequence[str] = ("gen", "edit")) -> dict[str, Any]:
        """Build (or check and reuse) the cached inputs of ``parts`` (see :mod:`muse_hf.training.umm.cache`).

        Returns:
            ``{part: CachedPart}``.
        """

        a = self.args
        key = cache_key(self.vae, self.condition_encoder, self.image_processor)
        sources = {
            "gen": (a.train_data, a.train_split, {"image": a.image_column, "caption": a.caption_column}),
            "edit": (a.edit_data or a.train_data, a.edit_split or a.train_split,
                     {"source": a.source_column, "target": a.target_column, "instruction": a.instruction_column}),
        }  # fmt: skip

        def encode_text(texts: list[str]) -> MuseCondition:
            # as inside the prepared train module's forward, which accelerate runs under autocast
            with torch.no_grad(), accelerator.autocast():
                return self.condition_encoder.encode(texts)

        built = {}
        for name in parts:
            data, split, columns = sources[name]
            root = (Path(a.cache_dir) if a.cache_dir is not None else default_cache_root(data)) / key
            built[name] = prepare_cached_part(
                name, root=root, source=data, split=split, columns=columns, image_processor=self.image_processor,
                encode_latents=self._encode_latents, encode_text=encode_text,
                batch_size=a.cache_batch_size, process_index=int(accelerator.process_index),
                num_processes=int(accelerator.num_processes), barrier=accelerator.wait_for_everyone,
            )  # fmt: skip
        return built

    def _cached_stream(self, accelerator: Accelerator, n_gen: int, n_edit: int, pin: bool) -> MixtureStream:
        """The mixture stream over the cache: same loaders, shuffling, split and resume as the image streams."""

        a = self.args
        wanted = [name for name, n in (("gen", n_gen), ("edit", n_edit)) if n > 0]
        built = self.prepare_cache(accelerator, wanted)
        loaders: dict[str, Any] = {}
        for name, n, seed in (("gen", n_gen, a.seed), ("edit", n_edit, a.seed + 1)):
            if n == 0:
                continue
            part = built[name]
            stream = load_tensor_stream(
                part.files, part.tensor_columns, part.text_columns, split=a.train_split,
                options=self._stream_options(accelerator, seed),
            )  # fmt: skip
            loaders[name] = EndlessLoader(make_dataloader(stream, n, num_workers=a.dataloader_num_workers,
                                                          drop_last=True, pin_memory=pin))  # fmt: skip
        return MixtureStream(loaders.get("gen"), loaders.get("edit"))

    def _generator(self, step: int) -> torch.Generator:
        """A per-(step, micro-batch, process) RNG: the same noise/timesteps/dropout after a resume."""
        last_step, k = self._micro
        k = k + 1 if last_step == step else 0
        self._micro = (step, k)
        seed = (self.args.seed * 1_000_003 + step * 1009 + k * 17 + self.process_index * 7_919) % (2**63 - 1)
        return torch.Generator(device=self.device).manual_seed(seed)

    def _encode_latents(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Frozen tokenizer: normalised DiT-space latents of several ``(B_i, 3, H, W)`` batches, in one pass."""
        sizes = [p.shape[0] for p in pixels]
        with torch.no_grad(), self.accelerator.autocast():
            z = self.vae.encode(torch.cat(pixels).to(self.device)).latents  # (sum B_i, c, h, w)
        return list(self.vae.normalize_latents(z.float()).split(sizes))

    def _cached_inputs(
        self, gen_b: dict[str, Any] | None, edit_b: dict[str, Any] | None, use_ref: bool
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Model inputs from a cached batch: stored latents and right-padded stored token states."""

        gen_in = edit_in = None
        if gen_b is not None:
            gen_in = {"latents": gen_b["latents"].to(self.device), "prompts": list(gen_b["caption"]),
                      "condition": stack_condition(gen_b["condition"], self.device)}  # fmt: skip
        if edit_b is not None:
            edit_in = {"latents": edit_b["target_latents"].to(self.device), "prompts": list(edit_b["instruction"]),
                       "condition": stack_condition(edit_b["condition"], self.device),
                       "reference_latents": edit_b["source_latents"].to(self.device) if use_ref else None}  # fmt: skip
        return gen_in, edit_in

    def _encoded_inputs(
        self, gen_b: dict[str, Any] | None, edit_b: dict[str, Any] | None, use_ref: bool
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Model inputs from an image batch: the frozen tokenizer encodes every image of the batch in one pass."""
        pixels: list[torch.Tensor] = []
        if gen_b is not None:
            pixels.append(gen_b["pixel_values"])  # (Bg, 3, H, W)
        if edit_b is not None:
            pixels.append(edit_b["target_pixel_values"])  # (Be, 3, H, W)
            if use_ref:
                pixels.append(edit_b["source_pixel_values"])
        latents = self._encode_latents(pixels)
        gen_in = edit_in = None
        if gen_b is not None:
            gen_in = {"latents": latents.pop(0), "prompts": list(gen_b["caption"])}
        if edit_b is not None:
            target = latents.pop(0)
            images = None
            if self.condition_encoder.supports_images:
                images = self.image_processor.postprocess(edit_b["source_pixel_values"].float(), output_type="pil")
            edit_in = {"latents": target, "prompts": list(edit_b["instruction"]),
                       "reference_latents": latents.pop(0) if use_ref else None, "images": images}  # fmt: skip
        return gen_in, edit_in

    def training_step(self, modules: dict[str, nn.Module], batch: dict[str, Any], step: int) -> StepOutput:  # noqa: D102
        gen_b, edit_b = batch.get("gen"), batch.get("edit")
        use_ref = self.train_module.connector.config.reference_channels is not None
        inputs = self._cached_inputs if self.args.cache_latents else self._encoded_inputs
        gen_in, edit_in = inputs(gen_b, edit_b, use_ref)
        outs = modules["model"](gen=gen_in, edit=edit_in, generator=self._generator(step))

        counts = {name: out.model_pred.shape[0] for name, out in outs.items()}
        total_n = sum(counts.values())
        loss = sum(out.loss * (counts[name] / total_n) for name, out in outs.items())  # batch mean
        logs: dict[str, torch.Tensor | float] = {"loss": loss.detach()}
        names = {"gen": "generation", "edit": "editing"}
        for name, out in outs.items():
            logs[f"loss/{names[name]}"] = out.loss.detach()
        dropped = torch.cat([out.dropped.float() for out in outs.values()])
        logs["condition_dropped"] = dropped.mean().detach()
        return StepOutput(losses={"model": loss}, logs=logs, num_samples=int(total_n))

    # ------------------------------------------------------------------ output
    def _materialise(
        self, accelerator: Accelerator, modules: dict[str, nn.Module]
    ) -> tuple[nn.Module, nn.Module] | None:
        """(connector, transformer) with the full trained weights, on the main process (None elsewhere)."""

        model = modules["model"]
        state = accelerator.get_state_dict(model) if is_sharded(accelerator) else None  # gathers shards
        if not accelerator.is_main_process:
            return None
        unwrapped = accelerator.unwrap_model(model)
        if state is None:
            return unwrapped.connector, unwrapped.transformer
        # Sharded (FSDP / ZeRO-3): an unsharded twin built from the configs, filled from the gathered state.

        connector = type(unwrapped.connector).from_config(unwrapped.connector.config)
        dit = unwrapped.transformer
        base_config = (dit.get_base_model() if is_peft(dit) else dit).config
        transformer = SanaTransformer2DModel.from_config(base_config)
        if is_peft(dit):
            transformer = get_peft_model(transformer, self._lora_config())
            transformer.peft_config["default"].base_model_name_or_path = dit.peft_config[
                "default"
            ].base_model_name_or_path
        twin = nn.ModuleDict({"connector": connector, "transformer": transformer})
        twin.load_state_dict({k: v.detach().cpu() for k, v in state.items()})
        return connector, transformer

    def build_pipeline(self, connector: nn.Module, transformer: nn.Module) -> MusePipeline:
        """A :class:`~muse_hf.pipelines.MusePipeline` of this task's frozen components and the given trained ones."""

        return MusePipeline(
            mllm=self.mllm, processor=self.processor, connector=connector, transformer=transformer,
            scheduler=self.scheduler, vae=self.vae, image_processor=self.image_processor,
        )  # fmt: skip

    def save_pretrained(
        self, accelerator: Accelerator, modules: dict[str, nn.Module], output_dir: str | os.PathLike
    ) -> None:  # noqa: D102
        parts = self._materialise(accelerator, modules)
        if parts is None:
            return
        connector, transformer = parts
        out = Path(output_dir)
        if is_peft(transformer):
            transformer.save_pretrained(str(out / LORA_DIR), safe_serialization=True)  # adapter only (peft way)
            transformer = copy.deepcopy(transformer).merge_and_unload()  # plain SANA DiT for the pipeline
        self.build_pipeline(connector, transformer).save_pretrained(str(out), safe_serialization=True)

    def evaluate(self, output_dir: str | os.PathLike) -> dict[str, float]:  # noqa: D102
        if not self.args.evaluate_at_end:
            return {}

        a = self.args
        return evaluate_saved_pipeline(
            output_dir, num_inference_steps=a.eval_num_inference_steps, guidance_scale=a.eval_guidance_scale,
            per_category=a.eval_per_category, num_edits=a.eval_num_edits, seed=a.seed,
        )  # fmt: skip

    def write_model_card(
        self, output_dir: str | os.PathLike, metrics: dict[str, float], summary: dict[str, Any]
    ) -> None:  # noqa: D102

        a = self.args
        settings = {
            **self.card_settings(summary),
            "base_model": [
                b
                for b in (
                    a.init_from,
                    a.tokenizer_name_or_path,
                    a.condition_encoder_name_or_path,
                    a.transformer_name_or_path,
                )
                if b
            ],  # fmt: skip
            "datasets": [d for d in dict.fromkeys([a.train_data, a.edit_data if a.edit_ratio > 0 else None]) if d],
        }
        write_model_card("pipeline", output_dir, metrics=metrics or None, settings=settings, repo_id=a.hub_model_id)


def _load_condition_encoder(name_or_path: str | None) -> tuple[nn.Module, Any]:
    """The ``mllm`` and its ``processor``: the packaged MiniLM, an InternVL ``-hf`` checkpoint or a text encoder."""

    if name_or_path is None:
        return load_default_text_encoder()
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type == "internvl":
        from transformers import AutoProcessor, InternVLForConditionalGeneration

        model = InternVLForConditionalGeneration.from_pretrained(name_or_path)
        try:
            processor = AutoProcessor.from_pretrained(name_or_path)
        except (ImportError, OSError, ValueError) as err:  # e.g. the video processor needs torchvision
            logger.warning("AutoProcessor failed for %s (%s); using its tokenizer as the processor.", name_or_path, err)
            processor = AutoTokenizer.from_pretrained(name_or_path)
        return model, processor
    return AutoModel.from_pretrained(name_or_path), AutoTokenizer.from_pretrained(name_or_path)


def __getattr__(name: str) -> Any:
    # The ``compute-scaling`` parser that was ``main`` here is ``muse_hf.cli.umm_task_main`` (``muse-hf compute-scaling``).
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:umm_task_main"})
