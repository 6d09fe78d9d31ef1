"""MusePipeline with tiny components: generation, editing, chat, save/load, guidance, training pieces."""

from __future__ import annotations

import json
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SanaTransformer2DModel
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    InternVLConfig,
    InternVLForConditionalGeneration,
    Qwen2Config,
)

from muse_hf.models.configuration_muse import MuseTokenizerConfig
from muse_hf.models.connector import MuseConnector
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.models.modeling_muse import MuseTokenizerModel
from muse_hf.objectives.semantic import default_text_embedder_path
from muse_hf.pipelines import (
    InternVLConditionEncoder,
    MuseCondition,
    MusePipeline,
    TextConditionEncoder,
    compute_latent_scaling,
    flow_matching_loss,
    load_default_text_encoder,
    sample_logit_normal_sigmas,
)

warnings.filterwarnings("ignore", message=".*torchvision.*")

SIZE, LATENT_C = 32, 8  # 32 px images, tokenizer factor 8 -> 4x4x8 latents
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_vae() -> MuseTokenizerModel:
    cfg = MuseTokenizerConfig.from_preset(
        "tiny",
        image_size=SIZE,
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
        decoder_config={
            "decoder_block_out_channels": [8, 16, 32],
            "decoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock"],
            "decoder_layers_per_block": [1, 1, 1],
            "decoder_qkv_multiscales": [[], [], []],
            "attention_head_dim": 8,
        },
        num_synergistic_blocks=1,
        hidden_size=32,
        num_attention_heads=2,
        latent_channels=LATENT_C,
        semantic_dim=16,
        scaling_factor=1.3,
        shift_factor=0.1,
    )
    return MuseTokenizerModel(cfg).eval()


def tiny_dit() -> SanaTransformer2DModel:
    return SanaTransformer2DModel(
        in_channels=LATENT_C,
        out_channels=LATENT_C,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=32,
        sample_size=SIZE // 8,
        patch_size=1,
    ).eval()


def make_text_pipeline(reference_channels: int | None = LATENT_C) -> MusePipeline:
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(default_text_embedder_path()))
    mllm = BertModel(
        BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
    ).eval()
    connector = MuseConnector(
        condition_dim=32,
        caption_channels=32,
        num_queries=4,
        num_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        reference_channels=reference_channels,
    ).eval()
    pipe = MusePipeline(
        mllm=mllm,
        processor=tok,
        connector=connector,
        transformer=tiny_dit(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(),
        image_processor=MuseImageProcessor(size={"height": SIZE, "width": SIZE}),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_internvl_pipeline() -> MusePipeline:
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(
        str(default_text_embedder_path()),
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, replace_extra_special_tokens=False
    )
    tok.chat_template = CHAT_TEMPLATE
    vae = tiny_vae()
    text = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )
    cfg = InternVLConfig(
        vision_config=vae.config.vision_config.to_dict(),
        text_config=text.to_dict(),
        image_token_id=tok.context_image_token_id,
        image_seq_length=16,
    )
    mllm = InternVLForConditionalGeneration(cfg).eval()
    connector = MuseConnector.from_llm_layers(mllm, 2, caption_channels=32, num_queries=4).eval()
    pipe = MusePipeline(
        mllm=mllm,
        processor=tok,
        connector=connector,
        transformer=tiny_dit(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        image_processor=MuseImageProcessor(size={"height": SIZE, "width": SIZE}),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe() -> MusePipeline:
    return make_text_pipeline()


@pytest.fixture(scope="module")
def vlm_pipe() -> MusePipeline:
    return make_internvl_pipeline()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scene(color: tuple[int, int, int] = (220, 30, 30), size: tuple[int, int] = (SIZE, SIZE)) -> PIL.Image.Image:
    img = PIL.Image.new("RGB", size, (240, 240, 240))
    img.paste(color, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return img


# ---------------------------------------------------------------------- generation
def test_output_types_and_shapes(pipe: MusePipeline) -> None:
    kw = dict(num_inference_steps=2, generator=gen(0))
    pil = pipe(["a red circle", "two blue squares"], **kw).images
    assert isinstance(pil, list) and len(pil) == 2 and all(im.size == (SIZE, SIZE) for im in pil)
    arr = pipe("a red circle", output_type="np", num_images_per_prompt=3, **kw).images
    assert arr.shape == (3, SIZE, SIZE, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    pt = pipe("a red circle", output_type="pt", **kw).images
    assert pt.shape == (1, 3, SIZE, SIZE) and pt.min() >= 0 and pt.max() <= 1
    lat = pipe("a red circle", output_type="latent", **kw).images
    assert lat.shape == (1, LATENT_C, SIZE // 8, SIZE // 8)
    wide = pipe("a red circle", output_type="pt", height=SIZE, width=2 * SIZE, **kw).images
    assert wide.shape == (1, 3, SIZE, 2 * SIZE)
    assert pipe("a red circle", return_dict=False, output_type="pt", **kw)[0].shape == (1, 3, SIZE, SIZE)


def test_latent_output_decodes_with_scaling(pipe: MusePipeline) -> None:
    lat = pipe("a circle", output_type="latent", num_inference_steps=2, generator=gen(3)).images
    img = pipe("a circle", output_type="pt", num_inference_steps=2, generator=gen(3)).images
    cfg = pipe.vae.config
    manual = pipe.vae.decode(lat / cfg.scaling_factor + cfg.shift_factor).sample
    torch.testing.assert_close(pipe.muse_image_processor.postprocess(manual, "pt"), img, atol=1e-5, rtol=1e-5)


def test_same_generator_same_image(pipe: MusePipeline) -> None:
    kw = dict(num_inference_steps=3, output_type="pt")
    a = pipe("a red circle", generator=gen(7), **kw).images
    b = pipe("a red circle", generator=gen(7), **kw).images
    c = pipe("a red circle", generator=gen(8), **kw).images
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().max() > 1e-3


def _count_dit_batches(pipe: MusePipeline, **kw) -> list[int]:
    batches: list[int] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: batches.append(args[0].shape[0]), with_kwargs=True
    )
    try:
        pipe(**kw)
    finally:
        handle.remove()
    return batches


def test_guidance_scale_one_skips_unconditional_branch(pipe: MusePipeline) -> None:
    base = dict(prompt=["a", "b"], num_inference_steps=3, output_type="latent")
    assert _count_dit_batches(pipe, guidance_scale=1.0, **base) == [2, 2, 2]
    assert _count_dit_batches(pipe, guidance_scale=4.5, **base) == [4, 4, 4]
    # Guidance changes the result; with guidance 1 the negative prompt is never used.
    a = pipe(guidance_scale=1.0, negative_prompt="zzz", generator=gen(0), **base).images
    b = pipe(guidance_scale=1.0, generator=gen(0), **base).images
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    c = pipe(guidance_scale=4.5, generator=gen(0), **base).images
    assert (a - c).abs().max() > 1e-4


def test_callback_on_step_end(pipe: MusePipeline) -> None:
    seen: list[int] = []

    def cb(p, step, t, kwargs):
        seen.append(step)
        assert set(kwargs) == {"latents", "encoder_hidden_states"}
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == 1 else {}

    out = pipe(
        "x",
        num_inference_steps=2,
        output_type="latent",
        callback_on_step_end=cb,
        callback_on_step_end_tensor_inputs=["latents", "encoder_hidden_states"],
    ).images
    assert seen == [0, 1]
    assert out.abs().max() == 0  # the replacement after the last step is the output


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(prompt=[]), "non-empty"),
        (dict(prompt=None), "non-empty"),
        (dict(prompt=["ok", 3]), "must be strings"),
        (dict(prompt="x", height=30), "multiple of 8"),
        (dict(prompt="x", width=0), "multiple of 8"),
        (dict(prompt=["a", "b"], negative_prompt=["n"]), "one negative prompt per prompt"),
        (dict(prompt="x", num_images_per_prompt=0), "num_images_per_prompt"),
        (dict(prompt="x", latents=torch.zeros(1, LATENT_C, 3, 3)), "latents"),
        (dict(prompt="x", output_type="jpg"), "output_type"),
        (dict(prompt="x", callback_on_step_end_tensor_inputs=["noise"]), "callback_on_step_end_tensor_inputs"),
        (dict(prompt=["a", "b", "c"], image=[scene(), scene()]), "2 images for 3 prompts"),
        (dict(prompt="x", num_images_per_prompt=2, generator=[gen(0)]), "generators"),
        (dict(prompt="x", guidance_scale=float("nan")), "`guidance_scale` must be a finite number"),
        (dict(prompt="x", guidance_scale="4.5"), "`guidance_scale` must be a finite number"),
        (dict(prompt="x", image=np.full((SIZE, SIZE, 3), np.nan, np.float32)), "`image`: .*NaN"),
        (dict(prompt="x", image=np.full((SIZE, SIZE, 3), 300, np.int32)), "`image`: .*0..255"),
        (dict(prompt="x", image=[]), "`image`: .*empty list"),
    ],
)
def test_check_inputs_errors(pipe: MusePipeline, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pipe(num_inference_steps=1, **kwargs)


@pytest.mark.parametrize("steps", [0, -2, 1.5, True])
def test_num_inference_steps_must_be_a_positive_int(pipe: MusePipeline, steps: object) -> None:
    with pytest.raises(ValueError, match="`num_inference_steps` must be an int >= 1"):
        pipe("x", num_inference_steps=steps)


def test_edit_images_are_read_by_the_processors_rules(pipe: MusePipeline, tmp_path) -> None:
    """uint16 and 2-D grey arrays (which the processor accepts) used to be refused by the pipeline."""
    grey = PIL.Image.new("RGB", (SIZE, SIZE), (156, 156, 156))  # 40000 / 65535 * 255 = 155.6 -> 156

    def edit(image: object) -> torch.Tensor:
        return pipe("make it green", image=image, num_inference_steps=1, output_type="pt", generator=gen(3)).images

    want = edit(grey)
    torch.testing.assert_close(edit(np.full((SIZE, SIZE), 40000, np.uint16)), want, atol=0, rtol=0)
    torch.testing.assert_close(edit(np.full((SIZE, SIZE), 156, np.uint8)), want, atol=0, rtol=0)
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"`image`: '.*cut\.png' could not be decoded.*truncated or corrupt"):
        edit(PIL.Image.open(tmp_path / "cut.png"))


# ---------------------------------------------------------------------- editing
def test_editing_returns_input_size_and_uses_reference(pipe: MusePipeline) -> None:
    src = scene(size=(40, 24))  # not a multiple of 8 in width: processed at 40x24 -> rounded, then resized back
    out = pipe("make the square green", image=src, num_inference_steps=2, generator=gen(0)).images[0]
    assert out.size == (40, 24)
    a = pipe("make it green", image=scene((220, 30, 30)), output_type="pt", num_inference_steps=2, generator=gen(1))
    b = pipe("make it green", image=scene((30, 30, 220)), output_type="pt", num_inference_steps=2, generator=gen(1))
    assert (a.images - b.images).abs().max() > 1e-4, "the reference image must condition the edit"
    two = pipe(["a", "b"], image=scene(), output_type="pt", num_inference_steps=1, height=SIZE, width=2 * SIZE)
    assert two.images.shape == (2, 3, SIZE, 2 * SIZE)


def test_edit_session_keeps_history(pipe: MusePipeline) -> None:
    session = pipe.edit_session(scene(), num_inference_steps=1, generator=None)
    first = session.edit("make it green")
    second = session.edit("make it blue")
    assert [t.instruction for t in session.history] == ["make it green", "make it blue"]
    assert session.image is second and first.size == second.size == (SIZE, SIZE)
    assert [m["role"] for m in session.messages] == ["user", "user", "assistant", "user", "assistant"]
    assert session.undo() is first and len(session.history) == 1
    session.reset()
    assert session.history == [] and session.image is session.source
    with pytest.raises(ValueError, match="Nothing to undo"):
        session.undo()
    with pytest.raises(ValueError, match="non-empty"):
        session.edit("  ")


def test_text_only_pipeline_without_reference_channels_cannot_edit() -> None:
    pipe = make_text_pipeline(reference_channels=None)
    with pytest.raises(ValueError, match="reference_channels"):
        pipe("make it green", image=scene(), num_inference_steps=1)


# ---------------------------------------------------------------------- save / load
def test_save_pretrained_from_pretrained_same_image(pipe: MusePipeline, tmp_path) -> None:
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["connector"] == ["muse_hf.models.connector", "MuseConnector"]
    assert index["vae"][1] == "MuseTokenizerModel" and index["mllm"] == ["transformers", "BertModel"]
    loaded = MusePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.vae, MuseTokenizerModel) and isinstance(loaded.connector, MuseConnector)
    assert loaded.vae.config.scaling_factor == pytest.approx(1.3)
    kw = dict(num_inference_steps=2, output_type="pt")
    torch.testing.assert_close(
        loaded("a red circle", generator=gen(5), **kw).images,
        pipe("a red circle", generator=gen(5), **kw).images,
        atol=1e-6,
        rtol=0,
    )
    edit = dict(image=scene(), **kw)
    torch.testing.assert_close(
        loaded("green", generator=gen(5), **edit).images,
        pipe("green", generator=gen(5), **edit).images,
        atol=1e-6,
        rtol=0,
    )


def test_generic_diffusion_pipeline_loads_a_muse_pipeline(pipe: MusePipeline, tmp_path) -> None:
    """Both loading paths give the same pipeline: MusePipeline.from_pretrained and, after `import muse_hf` (which
    registers the class with diffusers), diffusers.DiffusionPipeline.from_pretrained."""
    import diffusers

    import muse_hf  # noqa: F401  (the registration happens on import)

    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == "MusePipeline"
    assert diffusers.MusePipeline is MusePipeline
    generic = diffusers.DiffusionPipeline.from_pretrained(tmp_path)
    direct = MusePipeline.from_pretrained(tmp_path)
    assert type(generic) is MusePipeline and type(direct) is MusePipeline
    assert isinstance(generic.connector, MuseConnector) and isinstance(generic.vae, MuseTokenizerModel)
    generic.set_progress_bar_config(disable=True)
    direct.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=2, output_type="pt")
    torch.testing.assert_close(
        generic("a red circle", generator=gen(3), **kw).images,
        direct("a red circle", generator=gen(3), **kw).images,
        atol=0,
        rtol=0,
    )


def test_register_with_diffusers_never_replaces_a_foreign_class(monkeypatch, caplog) -> None:
    import diffusers

    from muse_hf.pipelines import register_with_diffusers

    assert register_with_diffusers() is True  # idempotent
    monkeypatch.delattr(diffusers, "MusePipeline")
    with pytest.raises(AttributeError, match="MusePipeline"):  # what diffusers raises when nothing registered it
        diffusers.MusePipeline  # noqa: B018
    assert register_with_diffusers() is True and diffusers.MusePipeline is MusePipeline
    foreign = type("MusePipeline", (), {})
    monkeypatch.setattr(diffusers, "MusePipeline", foreign, raising=False)
    assert register_with_diffusers() is False
    assert diffusers.MusePipeline is foreign
    assert "MusePipeline.from_pretrained(folder)" in caplog.text


# ---------------------------------------------------------------------- InternVL: shared weights, chat
def test_internvl_vision_tower_shares_tokenizer_backbone(vlm_pipe: MusePipeline) -> None:
    tower = vlm_pipe.mllm.model.vision_tower
    backbone = dict(vlm_pipe.vae.vision_model.named_parameters())
    names = [n for n, _ in tower.named_parameters()]
    assert vlm_pipe.shared_vision_parameters == len(names) == len(backbone) > 0
    for name, param in tower.named_parameters():
        assert param is backbone[name], name
    # Training the tokenizer moves the MLLM's vision features with it: same memory.
    with torch.no_grad():
        vlm_pipe.vae.vision_model.embeddings.patch_embeddings.projection.weight.add_(0.0)
    assert (
        tower.embeddings.patch_embeddings.projection.weight.data_ptr()
        == vlm_pipe.vae.vision_model.embeddings.patch_embeddings.projection.weight.data_ptr()
    )


def test_internvl_condition_and_edit(vlm_pipe: MusePipeline) -> None:
    enc = vlm_pipe.condition_encoder
    assert isinstance(enc, InternVLConditionEncoder) and enc.supports_images
    q = vlm_pipe.connector.query_embeds
    with torch.no_grad():
        plain = enc.encode(["a red circle", "two squares and a circle"], query_embeds=q)
        red = enc.encode(["recolor"], images=[scene((220, 30, 30))], query_embeds=q)
        blue = enc.encode(["recolor"], images=[scene((30, 30, 220))], query_embeds=q)
    assert plain.query_states.shape == (2, 4, 32)
    assert plain.attention_mask[0, 0] == 0 and plain.attention_mask[:, -1].all()  # left padding
    # 16 image-context tokens + <img> + </img> enter the prompt, and the image changes the queries' outputs.
    assert red.hidden_states.shape[1] >= 18
    assert (red.query_states - blue.query_states).abs().max() > 1e-5
    # As UniLIP, the connector gets the image tokens as the vision tower (+ projector) gave them, not LLM outputs.
    with torch.no_grad():
        feats = vlm_pipe.mllm.get_image_features(
            pixel_values=enc.pixel_values([scene((220, 30, 30))]), return_dict=True
        ).pooler_output  # (1, 16, D)
        ids = enc.tokenize(enc.render(["recolor"], True, 16))["input_ids"]
    at_image = ids[0] == vlm_pipe.mllm.config.image_token_id
    assert int(at_image.sum()) == 16
    torch.testing.assert_close(red.hidden_states[0, at_image], feats[0].to(red.hidden_states.dtype))
    out = vlm_pipe(["a red circle", "a square"], num_inference_steps=2, output_type="np", generator=gen(0)).images
    assert out.shape == (2, SIZE, SIZE, 3)
    assert vlm_pipe("make it green", image=scene(), num_inference_steps=1).images[0].size == (SIZE, SIZE)


def test_chat_matches_greedy_decoding(vlm_pipe: MusePipeline) -> None:
    img = scene()
    answer = vlm_pipe.chat(img, "what colour is the square?", max_new_tokens=3)
    assert isinstance(answer, str)
    enc = vlm_pipe.condition_encoder
    pv = enc.pixel_values([img])
    tok = enc.tokenize(enc.render(["what colour is the square?"], True, enc.num_image_tokens(SIZE, SIZE)))
    ids = tok["input_ids"]
    with torch.no_grad():
        for _ in range(3):  # manual greedy loop without cache
            logits = vlm_pipe.mllm(input_ids=ids, pixel_values=pv).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    expected = enc.tokenizer.decode(ids[0, tok["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert answer == expected
    with pytest.raises(ValueError, match="non-empty"):
        vlm_pipe.chat(img, "")


def test_chat_errors_with_text_only_encoder(pipe: MusePipeline) -> None:
    assert isinstance(pipe.condition_encoder, TextConditionEncoder)
    with pytest.raises(ValueError, match="needs an mllm that can see images"):
        pipe.chat(scene(), "what is this?")


def test_internvl_save_load_reties_and_reproduces(vlm_pipe: MusePipeline, tmp_path) -> None:
    vlm_pipe.save_pretrained(tmp_path)
    loaded = MusePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    w = loaded.mllm.model.vision_tower.embeddings.patch_embeddings.projection.weight
    assert w is loaded.vae.vision_model.embeddings.patch_embeddings.projection.weight
    kw = dict(image=scene(), num_inference_steps=2, output_type="pt")
    torch.testing.assert_close(
        loaded("green", generator=gen(2), **kw).images,
        vlm_pipe("green", generator=gen(2), **kw).images,
        atol=1e-6,
        rtol=0,
    )
    assert loaded.chat(scene(), "what?", max_new_tokens=2) == vlm_pipe.chat(scene(), "what?", max_new_tokens=2)


# ---------------------------------------------------------------------- condition encoders, training pieces
def test_default_text_encoder_is_packaged_minilm() -> None:
    model, tok = load_default_text_encoder()
    enc = TextConditionEncoder(model.eval(), tok)
    assert enc.condition_dim == 384
    with torch.no_grad():
        cond = enc.encode(["a red circle", "a much longer prompt about two blue squares"])
    assert cond.hidden_states.shape[-1] == 384 and cond.attention_mask[0].sum() < cond.attention_mask[1].sum()
    with pytest.raises(ValueError, match="cannot see images"):
        enc.encode(["x"], images=[scene()])


def test_condition_cat_and_where() -> None:
    a = MuseCondition(torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.long), reference_latents=torch.ones(2, 1, 2, 2))
    u = MuseCondition(torch.zeros(1, 5, 4), torch.ones(1, 5, dtype=torch.long))
    mixed = a.where(torch.tensor([True, False]), u)
    assert mixed.hidden_states.shape == (2, 5, 4)
    assert mixed.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert mixed.hidden_states[0].abs().sum() == 0 and mixed.hidden_states[1, :3].min() == 1
    assert mixed.reference_latents is a.reference_latents  # dropout drops the instruction, not the image
    assert (
        len(
            MuseCondition.cat(
                [
                    a.select(slice(0, 1)),
                    MuseCondition(u.hidden_states, u.attention_mask, reference_latents=torch.ones(1, 1, 2, 2)),
                ]
            )
        )
        == 2
    )
    with pytest.raises(ValueError, match="only some"):
        MuseCondition.cat([a, u])


def test_logit_normal_sigmas() -> None:
    s = sample_logit_normal_sigmas(20000, generator=gen(0))
    assert s.shape == (20000,) and (s > 0).all() and (s < 1).all()
    assert abs(s.mean().item() - 0.5) < 0.01
    assert abs(torch.logit(s).std().item() - 1.0) < 0.03
    shifted = sample_logit_normal_sigmas(20000, mean=1.0, generator=gen(0))
    assert shifted.mean() > 0.6


def test_flow_matching_loss(pipe: MusePipeline) -> None:
    enc = pipe.condition_encoder
    with torch.no_grad():
        cond = enc.encode(["a red circle", "a blue square", "two circles", "a triangle"])
        uncond = enc.encode([""])
    latents = torch.randn(4, LATENT_C, 4, 4)
    connector, dit = pipe.connector.train(), pipe.transformer.train()
    try:
        out = flow_matching_loss(dit, connector, latents, cond, uncond=uncond, generator=gen(0))
        again = flow_matching_loss(dit, connector, latents, cond, uncond=uncond, generator=gen(0))
        assert torch.isfinite(out.loss) and out.loss.item() == again.loss.item()
        assert out.model_pred.shape == latents.shape and ((out.sigmas > 0) & (out.sigmas < 1)).all()
        out.loss.backward()
        assert connector.query_embeds.grad.abs().sum() > 0
        assert dit.proj_out.weight.grad.abs().sum() > 0
        connector.zero_grad()
        dit.zero_grad()
        # Fixed noise / sigmas: the target is the velocity noise - x0, and sigma=0 feeds the clean latents.
        noise = torch.randn_like(latents)
        fixed = flow_matching_loss(
            dit, connector, latents, cond, condition_dropout=0.0, noise=noise, sigmas=torch.zeros(4)
        )
        torch.testing.assert_close(fixed.target, noise - latents)
        assert not fixed.dropped.any()
        # Dropout rate ~ condition_dropout over many draws; a dropped sample sees the unconditional condition.
        drops = [
            flow_matching_loss(
                dit,
                connector,
                latents,
                cond,
                uncond=uncond,
                condition_dropout=0.5,
                generator=gen(i),
                sigmas=torch.full((4,), 0.5),
            ).dropped
            for i in range(25)
        ]
        rate = torch.stack(drops).float().mean().item()
        assert 0.3 < rate < 0.7
        all_drop = flow_matching_loss(
            dit,
            connector,
            latents,
            cond,
            uncond=uncond,
            condition_dropout=0.999,
            noise=noise,
            sigmas=torch.full((4,), 0.5),
            generator=gen(1),
        )
        only_uncond = flow_matching_loss(
            dit,
            connector,
            latents,
            uncond.select([0, 0, 0, 0]),
            condition_dropout=0.0,
            noise=noise,
            sigmas=torch.full((4,), 0.5),
        )
        assert all_drop.dropped.all()
        torch.testing.assert_close(all_drop.model_pred, only_uncond.model_pred, atol=1e-5, rtol=1e-5)
    finally:
        connector.eval(), dit.eval()
        connector.zero_grad(), dit.zero_grad()
    with pytest.raises(ValueError, match="uncond"):
        flow_matching_loss(dit, connector, latents, cond, condition_dropout=0.1)
    with pytest.raises(ValueError, match="batch"):
        flow_matching_loss(dit, connector, latents[:3], cond, condition_dropout=0.0)


def test_compute_latent_scaling(pipe: MusePipeline) -> None:
    vae = tiny_vae()
    torch.manual_seed(0)
    batches = [{"pixel_values": torch.randn(4, 3, SIZE, SIZE)} for _ in range(3)]
    stats = compute_latent_scaling(vae, batches, max_batches=2)
    assert stats.num_images == 8 and stats.num_values == 8 * LATENT_C * 16
    with torch.no_grad():
        z = torch.cat([vae.encode(b["pixel_values"]).latents for b in batches[:2]])
    assert stats.shift_factor == pytest.approx(z.mean().item(), abs=1e-5)
    assert stats.scaling_factor == pytest.approx(1 / z.std(unbiased=False).item(), rel=1e-4)
    compute_latent_scaling(vae, [b["pixel_values"] for b in batches[:2]], apply=True)
    normed = vae.normalize_latents(z)
    assert abs(normed.mean().item()) < 1e-4 and abs(normed.std(unbiased=False).item() - 1) < 1e-3
    with pytest.raises(ValueError, match="no batches"):
        compute_latent_scaling(vae, [])
    with pytest.raises(ValueError, match="pixel_key"):
        compute_latent_scaling(vae, [{"image": torch.zeros(1, 3, SIZE, SIZE)}])


def test_geneval_scores_the_pipeline(pipe: MusePipeline) -> None:
    from muse_hf.evaluation.geneval_pipeline import evaluate_pipeline

    result = evaluate_pipeline(pipe, num_inference_steps=1, per_category=1, num_edits=3, batch_size=6)
    gen_scores = result["generation"]
    assert gen_scores["num_images"] == 6 and 0.0 <= gen_scores["overall"] <= 1.0
    assert set(gen_scores["categories"]) == {
        "single_object",
        "colors",
        "two_object",
        "color_attr",
        "counting",
        "position",
    }
    assert result["edits"]["num_edits"] == 3 and 0.0 <= result["edits"]["success"] <= 1.0
    assert result["settings"]["height"] == SIZE
    assert result["floors"]["blank_canvas"]["overall"] == 0.0 and result["settings"]["seeds"] == "seed + i for image i"
    no_edit = evaluate_pipeline(
        make_text_pipeline(reference_channels=None), num_inference_steps=1, per_category=1, floors=False
    )
    assert no_edit["edits"] is None
