"""MuseTokenizerModel: shapes, exact gradient routing, SDPA == eager, save/load, Auto classes, real-checkpoint loading."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from muse_hf.models import (
    MuseTokenizerConfig,
    MuseTokenizerModel,
    RotaryEmbedding2D,
    SynergisticBlock,
    register_auto_classes,
)

ROUTINGS = ("decoupled", "shared", "soft", "two_stream")
PLACEMENTS = ("append", "replace_last")


def _model(tiny_config, **overrides) -> MuseTokenizerModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return MuseTokenizerModel(tiny_config(**overrides))


def _pixels(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


def _grads(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of ``loss`` for every trainable parameter (zeros where autograd never reached it)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    got = torch.autograd.grad(loss, list(params.values()), allow_unused=True, retain_graph=True)
    return {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(params.items(), got)}


def _nonzero(grads: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, g in grads.items() if torch.count_nonzero(g) > 0}


def _topology_loss(attentions) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return sum((a * torch.rand(a.shape, generator=gen)).sum() for a in attentions)


# ---------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_forward_shapes_all_routings_and_placements(tiny_config, routing: str, placement: str) -> None:
    model = _model(tiny_config, routing=routing, placement=placement)
    cfg = model.config
    out = model(_pixels(), output_attentions=True, output_semantic=True, output_hidden_states=True)
    h, w = cfg.latent_grid
    assert out.latents.shape == (2, cfg.latent_channels, h, w)
    assert out.sample.shape == (2, 3, 32, 32)
    n = h * w * (4 if placement == "replace_last" else 1)  # replace_last blocks run before the unshuffle
    assert len(out.attentions) == len(cfg.topology_layers)
    for attn in out.attentions:
        assert attn.shape == (2, cfg.block_heads, n, n)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, cfg.block_heads, n))
    assert out.semantic_embeds.shape == (2, cfg.semantic_dim)
    assert len(out.hidden_states) == cfg.num_synergistic_blocks + 1
    assert out.hidden_states[0].shape == (2, n, cfg.block_width)


def test_encode_decode_features_and_tuple_outputs(tiny_config) -> None:
    model = _model(tiny_config).eval()
    x = _pixels()
    with torch.no_grad():
        enc = model.encode(x)
        assert enc.latents.shape == (2, 8, 4, 4) and enc.attentions is None and enc.semantic_embeds is None
        dec = model.decode(enc.latents)
        assert dec.sample.shape == (2, 3, 32, 32)
        out = model(x)
        torch.testing.assert_close(out.sample, dec.sample)
        assert out.attentions is None and out.semantic_embeds is None
        feats = model.get_image_features(x)
        torch.testing.assert_close(feats, model.encode(x, output_semantic=True).semantic_embeds)
        assert feats.shape == (2, 16)
        tup = model(x, return_dict=False)
        assert isinstance(tup, tuple) and len(tup) == 2 and tup[0].shape == (2, 3, 32, 32)
        latents = model.encode(x, return_dict=False)[0]
        torch.testing.assert_close(model.denormalize_latents(model.normalize_latents(latents)), latents)


def test_submodule_names_and_parameter_counts(tiny_config) -> None:
    counts = {}
    for routing in ROUTINGS:
        model = _model(tiny_config, routing=routing)
        for name in (
            "vision_model",
            "adapter",
            "blocks",
            "norm",
            "to_latent",
            "semantic_projector",
            "decoder",
        ):
            assert hasattr(model, name), name
        assert all(isinstance(b, SynergisticBlock) for b in model.blocks)
        last = model.blocks[-1]
        assert (
            hasattr(last, "q_topo") and hasattr(last, "k_topo") and hasattr(last, "v_sem") and hasattr(last, "o_proj")
        )
        if routing == "decoupled":
            assert last.v_itc is not None and model.blocks[0].v_itc is None  # only semantic layers carry v_itc
        else:
            assert all(b.v_itc is None for b in model.blocks)
        assert (model.recon_blocks is not None) == (routing == "two_stream")
        counts[routing] = sum(p.numel() for p in model.parameters())
    width = 32
    assert counts["decoupled"] - counts["shared"] == width * width + width  # one extra v_itc (+bias)
    assert counts["soft"] == counts["shared"]
    assert counts["two_stream"] > counts["decoupled"]


def test_decoder_resize_when_factor_differs(tiny_config) -> None:
    # a 2-stage decoder upsamples 2x, the tokenizer's ratio is 8: decode resizes to the pixel grid
    model = _model(
        tiny_config,
        decoder_config={
            "decoder_block_types": ["ResBlock", "ResBlock"],
            "decoder_block_out_channels": [8, 16],
            "decoder_layers_per_block": [1, 1],
            "decoder_qkv_multiscales": [[], []],
        },
    )
    assert model.config.decoder_upsampling_factor == 2
    lat = torch.randn(1, 8, 4, 4)
    assert model.decode(lat).sample.shape == (1, 3, 32, 32)
    assert model.decode(lat, output_size=(24, 40)).sample.shape == (1, 3, 24, 40)


def test_bad_inputs_raise_clear_errors(tiny_config) -> None:
    model = _model(tiny_config)
    with pytest.raises(ValueError, match="multiple of 8"):
        model.encode(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.encode(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="latents must be"):
        model.decode(torch.randn(1, 4, 4, 4))


def test_non_square_input(tiny_config) -> None:
    model = _model(tiny_config)
    out = model(torch.randn(1, 3, 32, 48), output_attentions=True)
    assert out.latents.shape == (1, 8, 4, 6) and out.sample.shape == (1, 3, 32, 48)
    assert out.attentions[0].shape == (1, 2, 24, 24)


# ---------------------------------------------------------------------------------------------------- gradient routing
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_decoupled_gradient_routing_is_exact(tiny_config, placement: str, detach: bool) -> None:
    model = _model(
        tiny_config,
        routing="decoupled",
        placement=placement,
        topology_layers=[0, 1],
        detach_topology_input=detach,
    )
    model.train()
    x = _pixels()
    out = model(x, output_attentions=True, output_semantic=True)
    topo_names = {f"blocks.{i}.{p}.weight" for i in range(2) for p in ("q_topo", "k_topo", "q_norm", "k_norm")} | {
        f"blocks.{i}.{p}.bias" for i in range(2) for p in ("q_topo", "k_topo")
    }

    topo = _grads(model, _topology_loss(out.attentions))
    if detach:  # this project's stricter variant: only the topology stream, in every topology block
        assert _nonzero(topo) == topo_names
        for name, g in topo.items():
            if ".v_sem." in name or ".v_itc." in name:
                assert torch.count_nonzero(g) == 0, name
    else:  # released behaviour: exact zeros per block (a block's own values and everything after it)
        for i, attn in enumerate(out.attentions):
            reached = _nonzero(_grads(model, _topology_loss([attn])))
            own = {n for n in reached if n.startswith(f"blocks.{i}.")}
            assert own == {n for n in topo_names if n.startswith(f"blocks.{i}.")} | {f"blocks.{i}.norm1.weight"}
            assert not any(n.startswith(("blocks.1.", "norm.", "to_latent.", "decoder.")) for n in reached - own)
            if i == 1:
                assert "blocks.0.v_sem.weight" in reached  # through the block input into the previous block

    recon = _grads(model, (out.sample - x).square().mean())
    assert not _nonzero(recon) & topo_names  # exactly zero on q_topo/k_topo
    assert any(".v_sem." in n for n in _nonzero(recon)) and any(n.startswith("vision_model.") for n in _nonzero(recon))

    sem = _grads(model, out.semantic_embeds.square().sum())
    assert not _nonzero(sem) & topo_names
    assert "blocks.1.v_itc.weight" in _nonzero(sem)
    assert "blocks.1.v_itc.weight" not in _nonzero(recon)  # reconstruction never reaches the semantic values


@pytest.mark.parametrize("routing", ["shared", "soft"])
def test_shared_routing_has_cross_gradients(tiny_config, routing: str) -> None:
    model = _model(tiny_config, routing=routing, topology_layers=[0, 1])
    model.train()
    x = _pixels()
    out = model(x, output_attentions=True, output_semantic=True)
    qk = {f"blocks.{i}.{p}.weight" for i in range(2) for p in ("q_topo", "k_topo")}
    topo = _nonzero(_grads(model, _topology_loss(out.attentions)))
    assert "blocks.0.v_sem.weight" in topo  # block 1's topology loss reaches block 0's values
    assert qk & _nonzero(_grads(model, (out.sample - x).square().mean()))
    assert qk & _nonzero(_grads(model, out.semantic_embeds.square().sum()))


def test_two_stream_reconstruction_does_not_touch_topology_stack(tiny_config) -> None:
    model = _model(tiny_config, routing="two_stream")
    model.train()
    x = _pixels()
    out = model(x, output_attentions=True, output_semantic=True)
    recon = _nonzero(_grads(model, (out.sample - x).square().mean()))
    assert not any(n.startswith("blocks.") for n in recon)
    assert any(n.startswith("recon_blocks.") for n in recon)
    topo = _nonzero(_grads(model, _topology_loss(out.attentions)))
    assert not any(n.startswith("recon_blocks.") for n in topo) and any(n.startswith("blocks.") for n in topo)


# ---------------------------------------------------------------------------------------------------- SDPA == eager
@pytest.mark.parametrize("routing", ROUTINGS)
def test_sdpa_path_equals_eager_path(tiny_config, routing: str) -> None:
    model = _model(tiny_config, routing=routing).eval()
    x = _pixels()
    with torch.no_grad():
        fused = model.encode(x, output_semantic=True)  # SDPA + fused qkv projection
        eager = model.encode(x, output_attentions=True, output_semantic=True)
    torch.testing.assert_close(fused.latents, eager.latents, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.semantic_embeds, eager.semantic_embeds, atol=1e-5, rtol=0)
    with torch.enable_grad():  # unfused projections, SDPA with detached q/k
        grad_path = model.encode(x)
    torch.testing.assert_close(grad_path.latents.detach(), fused.latents, atol=1e-5, rtol=0)


def test_block_sdpa_equals_eager_with_gradients() -> None:
    block = SynergisticBlock(32, 2, 64, routing="decoupled", semantic=True)
    x = torch.randn(2, 16, 32, requires_grad=True)
    cos, sin = RotaryEmbedding2D(16)(4, 4, x.device, x.dtype)
    out_e, attn, sem_e = block(x, cos, sin, output_attentions=True, output_semantic=True)
    out_s, none, sem_s = block(x, cos, sin, output_attentions=False, output_semantic=True)
    assert none is None and attn.shape == (2, 2, 16, 16)
    torch.testing.assert_close(out_e, out_s, atol=1e-5, rtol=0)
    torch.testing.assert_close(sem_e, sem_s, atol=1e-5, rtol=0)
    g_e = torch.autograd.grad((out_e.square().sum() + sem_e.sum()), [x, block.v_sem.weight, block.v_itc.weight])
    g_s = torch.autograd.grad((out_s.square().sum() + sem_s.sum()), [x, block.v_sem.weight, block.v_itc.weight])
    for a, b in zip(g_e, g_s):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- misc behaviour
def test_warns_when_a_decoupled_block_has_no_topology_supervision(tiny_config) -> None:
    with pytest.warns(UserWarning, match=r"blocks \[0\]"):
        MuseTokenizerModel(tiny_config(topology_layers=[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MuseTokenizerModel(tiny_config(topology_layers=[0, 1]))
        MuseTokenizerModel(tiny_config(routing="shared", topology_layers=[1]))


def test_freeze_backbone_and_grad_scale(tiny_config) -> None:
    frozen = _model(tiny_config, freeze_vision_backbone=True)
    assert not any(p.requires_grad for p in frozen.vision_model.parameters())
    assert all(p.requires_grad for p in frozen.blocks.parameters())

    x = _pixels(1)
    full = _model(tiny_config, grad_scale=1.0)
    half = _model(tiny_config, grad_scale=0.5)
    half.load_state_dict(full.state_dict())
    name = "vision_model.embeddings.patch_embeddings.projection.weight"
    g_full = _grads(full, full.encode(x).latents.square().mean())
    g_half = _grads(half, half.encode(x).latents.square().mean())
    torch.testing.assert_close(g_half[name], 0.5 * g_full[name], atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(g_half["to_latent.weight"], g_full["to_latent.weight"])


def test_gradient_checkpointing_matches(tiny_config) -> None:
    model = _model(tiny_config).train()
    x = _pixels()
    ref = _grads(model, model(x).sample.square().mean())
    model.gradient_checkpointing_enable()
    assert all(b.gradient_checkpointing for b in model.blocks)
    ckpt = _grads(model, model(x).sample.square().mean())
    for name in ("blocks.0.v_sem.weight", "blocks.1.mlp.down_proj.weight", "adapter.proj.weight"):
        torch.testing.assert_close(ckpt[name], ref[name], atol=1e-6, rtol=1e-5)


def test_bf16_autocast_encode(tiny_config) -> None:
    model = _model(tiny_config).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_pixels(1), output_attentions=True, output_semantic=True)
    assert torch.isfinite(out.sample.float()).all() and out.attentions[0].shape[-1] == 16


# ---------------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize(("routing", "placement"), [("decoupled", "append"), ("two_stream", "replace_last")])
def test_save_load_round_trip_is_bit_exact(tiny_config, tmp_path, routing: str, placement: str) -> None:
    model = _model(tiny_config, routing=routing, placement=placement, spectral_filter_alpha=0.1).eval()
    with torch.no_grad():  # make every tensor distinctive, including the decoder and norms
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "pytorch_model.bin").exists()
    loaded = MuseTokenizerModel.from_pretrained(tmp_path).eval()
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    x = _pixels(1)
    with torch.no_grad():
        assert torch.equal(model(x).sample, loaded(x).sample)
    drop = {"_name_or_path", "dtype"}
    a_cfg = {k: v for k, v in model.config.to_dict().items() if k not in drop | {"vision_config"}}
    b_cfg = {k: v for k, v in loaded.config.to_dict().items() if k not in drop | {"vision_config"}}
    assert a_cfg == b_cfg
    assert loaded.config.vision_config.to_diff_dict() | {"dtype": None} == model.config.vision_config.to_diff_dict() | {
        "dtype": None
    }


def test_auto_classes_round_trip(tiny_config, tmp_path) -> None:
    from transformers import AutoConfig, AutoModel

    register_auto_classes()
    register_auto_classes()  # idempotent
    model = _model(tiny_config).eval()
    model.save_pretrained(tmp_path)
    cfg = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(cfg, MuseTokenizerConfig)
    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, MuseTokenizerModel)
    for key, value in model.state_dict().items():
        assert torch.equal(value, auto.state_dict()[key]), key
    assert isinstance(AutoModel.from_config(cfg), MuseTokenizerModel)

    from transformers import AutoImageProcessor

    from muse_hf.models import MuseImageProcessor

    MuseImageProcessor().save_pretrained(tmp_path)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), MuseImageProcessor)


# ---------------------------------------------------------------------------------------------------- real checkpoints
VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": [4, 4],
    "image_size": [32, 32],
    "attention_bias": True,
}


def _save_internvl(path, bare: bool = False) -> dict[str, torch.Tensor]:
    """Save a tiny InternVL checkpoint in the Hub's layout; return the vision tower's tensors."""
    from transformers import (
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLVisionConfig,
        InternVLVisionModel,
    )

    if bare:
        tower = InternVLVisionModel(InternVLVisionConfig(**VISION))
        with torch.no_grad():
            for p in tower.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        tower.save_pretrained(path)
        return {k: v.clone() for k, v in tower.state_dict().items()}
    text = {
        "model_type": "qwen2",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
        "vocab_size": 128,
    }
    full = InternVLForConditionalGeneration(InternVLConfig(vision_config=VISION, text_config=text, image_token_id=5))
    with torch.no_grad():
        for p in full.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # lambda/position/cls are constant at init: make them distinctive
    full.save_pretrained(path)
    return {k: v.clone() for k, v in full.model.vision_tower.state_dict().items()}


def _save_dc_ae(path, latent_channels: int = 8) -> dict[str, torch.Tensor]:
    from diffusers import AutoencoderDC

    ae = AutoencoderDC(
        latent_channels=latent_channels,
        attention_head_dim=8,
        encoder_block_types=["ResBlock", "ResBlock", "EfficientViTBlock"],
        decoder_block_types=["ResBlock", "ResBlock", "EfficientViTBlock"],
        encoder_block_out_channels=[8, 16, 32],
        decoder_block_out_channels=[8, 16, 32],
        encoder_layers_per_block=[1, 1, 1],
        decoder_layers_per_block=[1, 1, 1],
        encoder_qkv_multiscales=[[], [], [5]],
        decoder_qkv_multiscales=[[], [], [5]],
        upsample_block_type="interpolate",
        downsample_block_type="Conv",
    )
    ae.save_pretrained(path)
    return {k: v.clone() for k, v in ae.decoder.state_dict().items()}


COMPONENT_OVERRIDES = {
    "num_synergistic_blocks": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "semantic_dim": 16,
    "freeze_vision_backbone": False,
}


@pytest.mark.parametrize("bare", [False, True])
def test_from_pretrained_components_append(tmp_path, bare: bool) -> None:
    vision_sd = _save_internvl(tmp_path / "internvl", bare=bare)
    decoder_sd = _save_dc_ae(tmp_path / "dcae")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = MuseTokenizerModel.from_pretrained_components(
            tmp_path / "internvl", tmp_path / "dcae", preset="muse-1b", **COMPONENT_OVERRIDES
        )
    assert model.config.vision_config.hidden_size == 32 and model.config.image_size == 32
    assert model.config.latent_channels == 8 and model.config.decoder_config["decoder_block_out_channels"] == [
        8,
        16,
        32,
    ]
    own = model.vision_model.state_dict()
    assert own.keys() == vision_sd.keys()
    for key, value in vision_sd.items():
        assert torch.equal(own[key], value), key
    dec = model.decoder.state_dict()
    assert dec.keys() == decoder_sd.keys()
    for key, value in decoder_sd.items():
        assert torch.equal(dec[key], value), key
    out = model(torch.randn(1, 3, 32, 32))
    assert out.sample.shape == (1, 3, 32, 32)  # f4 decoder on a 4x4 latent -> 16 px, resized to 32


@pytest.mark.parametrize("routing", ["decoupled", "two_stream"])
def test_from_pretrained_components_replace_last_initialises_blocks(tmp_path, routing: str) -> None:
    vision_sd = _save_internvl(tmp_path / "internvl")
    model = MuseTokenizerModel.from_pretrained_components(
        tmp_path / "internvl",
        None,
        preset="tiny",
        placement="replace_last",
        routing=routing,
        **COMPONENT_OVERRIDES,
    )
    keep = 3 - 2
    assert len(model.vision_model.encoder.layer) == keep and model.config.vision_config.num_hidden_layers == 3
    torch.testing.assert_close(
        model.vision_model.encoder.layer[0].attention.q_proj.weight,
        vision_sd["encoder.layer.0.attention.q_proj.weight"],
    )
    stacks = [model.blocks] + ([model.recon_blocks] if routing == "two_stream" else [])
    for stack in stacks:
        for i, block in enumerate(stack):
            src = f"encoder.layer.{keep + i}."
            assert torch.equal(block.q_topo.weight, vision_sd[src + "attention.q_proj.weight"])
            assert torch.equal(block.k_topo.bias, vision_sd[src + "attention.k_proj.bias"])
            assert torch.equal(block.v_sem.weight, vision_sd[src + "attention.v_proj.weight"])
            if block.v_itc is not None:
                assert torch.equal(block.v_itc.weight, vision_sd[src + "attention.v_proj.weight"])
            lam = vision_sd[src + "lambda_1"]
            torch.testing.assert_close(
                block.o_proj.weight, vision_sd[src + "attention.projection_layer.weight"] * lam[:, None]
            )
            assert torch.equal(block.norm1.weight, vision_sd[src + "layernorm_before.weight"])
    assert model.encode(torch.randn(1, 3, 32, 32)).latents.shape == (1, model.config.latent_channels, 4, 4)


def test_from_pretrained_components_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="Could not fetch 'config.json'"):
        MuseTokenizerModel.from_pretrained_components("OpenGVLab/InternVL3-1B-hf")
    _save_dc_ae(tmp_path / "dcae")
    with pytest.raises(ValueError, match="not an InternVL checkpoint"):
        MuseTokenizerModel.from_pretrained_components(tmp_path / "dcae", None, preset="tiny")
    with pytest.raises(ValueError, match="config.json not found"):
        MuseTokenizerModel.from_pretrained_components(tmp_path, None, preset="tiny")
    vision_sd = _save_internvl(tmp_path / "internvl")
    model = MuseTokenizerModel.from_pretrained_components(
        tmp_path / "internvl", None, preset="tiny", **COMPONENT_OVERRIDES
    )
    with pytest.raises(ValueError, match="does not match vision_config"):
        model.load_vision_state_dict({k: v for k, v in vision_sd.items() if "layer.0." not in k})
    with pytest.raises(ValueError, match="4 layers"):
        model.load_vision_state_dict(
            {
                **vision_sd,
                **{k.replace("layer.0.", "layer.3."): v for k, v in vision_sd.items() if "layer.0." in k},
            }
        )


def test_muse_1b_parameter_count_on_meta_device() -> None:
    """Paper appendix E.3: MUSE is 496M parameters (UniLIP 482M). Our muse-1b tokenizer = InternViT-300M + 6 blocks
    + adapter/projector + the DC-AE f32c32 decoder; the paper's figure also counts a connector, so we only require
    the same ballpark."""
    cfg = MuseTokenizerConfig.from_preset("muse-1b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.device("meta"):
            model = MuseTokenizerModel(cfg)
    assert next(model.parameters()).device.type == "meta"
    total = sum(p.numel() for p in model.parameters())
    parts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("vision_model", "adapter", "blocks", "semantic_projector", "decoder")
    }
    print(
        f"muse-1b parameters: {total / 1e6:.1f}M  parts (M): "
        + ", ".join(f"{k}={v / 1e6:.1f}" for k, v in parts.items())
    )
    assert 300e6 < parts["vision_model"] < 310e6  # InternViT-300M
    assert 155e6 < parts["decoder"] < 165e6  # DC-AE f32c32 decoder half
    assert 450e6 < total < 540e6  # paper: 496M


def test_training_forward_after_inference_mode(tiny_config):
    """RoPE tables cached under inference_mode must not leak into a later training forward."""
    from muse_hf.models import MuseTokenizerModel

    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny_config())
    pixels = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        model.encode(pixels, output_attentions=True)
    out = model(pixels, output_attentions=True)
    out.sample.mean().backward()
    assert model.blocks[0].v_sem.weight.grad is not None
