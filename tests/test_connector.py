"""MuseConnector: shapes, masking, bidirectionality, LLM initialisation, save/load."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2Model
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

from muse_hf.models.connector import MuseConnector


def _connector(**kw) -> MuseConnector:
    torch.manual_seed(0)
    args = dict(
        condition_dim=16,
        caption_channels=24,
        num_queries=5,
        num_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        reference_channels=8,
    )
    args.update(kw)
    return MuseConnector(**args).eval()


def _tiny_qwen(layers: int = 3) -> Qwen2Model:
    torch.manual_seed(1)
    cfg = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
    )
    cfg._attn_implementation = "eager"
    return Qwen2Model(cfg).eval()


def test_shapes_and_mask() -> None:
    c = _connector()
    x = torch.randn(2, 7, 16)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    out = c(x, mask)
    assert out.encoder_hidden_states.shape == (2, 7 + 5, 24)
    assert out.encoder_attention_mask.tolist()[1] == [1, 1, 1, 1, 0, 0, 0] + [1] * 5
    ref = c(x, mask, reference_latents=torch.randn(2, 8, 3, 2))
    assert ref.encoder_hidden_states.shape == (2, 7 + 6 + 5, 24)
    assert ref.encoder_attention_mask[:, 7:].all()
    hs, m = c(x, mask, return_dict=False)
    torch.testing.assert_close(hs, out.encoder_hidden_states)


def test_padding_does_not_change_outputs() -> None:
    c = _connector()
    x = torch.randn(1, 7, 16)
    mask = torch.ones(1, 7, dtype=torch.long)
    mask[0, 4:] = 0
    padded = c(x, mask).encoder_hidden_states  # (1, 12, 24)
    plain = c(x[:, :4]).encoder_hidden_states  # (1, 9, 24)
    torch.testing.assert_close(padded[:, :4], plain[:, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[:, 7:], plain[:, 4:], atol=1e-5, rtol=1e-5)


def test_bidirectional() -> None:
    c = _connector()
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[0, -1] += 1.0  # change the LAST condition token
    a, b = c(x).encoder_hidden_states, c(y).encoder_hidden_states
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4, "first token must see later tokens (no causal mask)"


def test_query_states_replace_learned_queries() -> None:
    c = _connector()
    x = torch.randn(2, 4, 16)
    q = torch.randn(2, 5, 16)
    own = c(x).encoder_hidden_states
    given = c(x, query_states=q).encoder_hidden_states
    assert (own - given).abs().max() > 1e-4
    expl = c(x, query_states=c.query_embeds.unsqueeze(0).expand(2, -1, -1)).encoder_hidden_states
    torch.testing.assert_close(own, expl)


def test_gradients_reach_queries_and_layers() -> None:
    c = _connector().train()
    c(torch.randn(2, 4, 16)).encoder_hidden_states.square().mean().backward()
    assert c.query_embeds.grad is not None and c.query_embeds.grad.abs().sum() > 0
    assert c.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert c.reference_proj.weight.grad is None  # unused without reference latents


def test_from_llm_layers_copies_last_layers_and_matches_qwen2_math() -> None:
    llm = _tiny_qwen(3)
    c = MuseConnector.from_llm_layers(llm, 2, caption_channels=24, num_queries=5).eval()
    assert c.config.condition_dim == c.config.hidden_size == 32
    assert c.config.num_key_value_heads == 2 and c.config.intermediate_size == 64
    for dst, src in zip(c.layers, llm.layers[-2:]):
        for k, v in dst.state_dict().items():
            torch.testing.assert_close(v, src.state_dict()[k])
    # One copied layer computes exactly what the Qwen2 layer computes with a bidirectional mask.
    layer: Qwen2DecoderLayer = llm.layers[-2]
    x = torch.randn(2, 7, 32)
    pos = torch.arange(7)[None].expand(2, -1)
    cos, sin = Qwen2RotaryEmbedding(llm.config)(x, pos)
    ref = layer(x, attention_mask=torch.zeros(2, 1, 7, 7), position_embeddings=(cos, sin))
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    ccos, csin = get_1d_rotary_pos_embed(
        8, pos.flatten().float(), theta=c.config.rope_theta, use_real=True, repeat_interleave_real=False
    )
    ours = c.layers[0](x, (ccos.view(2, 1, 7, 8), csin.view(2, 1, 7, 8)), torch.ones(2, 1, 1, 7, dtype=torch.bool))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_from_llm_layers_errors() -> None:
    llm = _tiny_qwen(2)
    with pytest.raises(ValueError, match="cannot copy the last 3"):
        MuseConnector.from_llm_layers(llm, 3, caption_channels=8)
    wrong = _connector(condition_dim=32, hidden_size=64)
    with pytest.raises(ValueError, match="Shape mismatch"):
        wrong.load_llm_layers(llm)
    with pytest.raises(ValueError, match="decoder layer stack"):
        wrong.load_llm_layers(torch.nn.Linear(2, 2))


def test_bad_inputs() -> None:
    c = _connector(reference_channels=None)
    with pytest.raises(ValueError, match=r"\(B, L, 16\)"):
        c(torch.randn(2, 4, 15))
    with pytest.raises(ValueError, match="attention_mask"):
        c(torch.randn(2, 4, 16), torch.ones(2, 5))
    with pytest.raises(ValueError, match="reference_channels"):
        c(torch.randn(2, 4, 16), reference_latents=torch.randn(2, 8, 2, 2))
    with pytest.raises(ValueError, match="even"):
        MuseConnector(condition_dim=8, caption_channels=8, hidden_size=12, num_attention_heads=4)


def test_save_load_round_trip(tmp_path) -> None:
    c = _connector()
    c.save_pretrained(tmp_path)
    loaded = MuseConnector.from_pretrained(tmp_path).eval()
    assert loaded.config.reference_channels == 8 and loaded.config.num_queries == 5
    x, r = torch.randn(2, 4, 16), torch.randn(2, 8, 2, 2)
    torch.testing.assert_close(
        loaded(x, reference_latents=r).encoder_hidden_states, c(x, reference_latents=r).encoder_hidden_states
    )


def test_from_llm_layers_equals_unilips_trimmed_llm_copy() -> None:
    """UniLIP's connector is deepcopy(language_model) minus its early layers and token embeddings, so it keeps the
    final norm; its ``hidden_states[-1]`` goes to a linear projector. Ours must compute exactly that."""
    import copy

    llm = _tiny_qwen(3)
    with torch.no_grad():
        llm.norm.weight.uniform_(0.5, 1.5)  # a trained-looking final norm (not all ones)
    c = MuseConnector.from_llm_layers(llm, 2, caption_channels=24, num_queries=5).eval()
    torch.testing.assert_close(c.norm.weight, llm.norm.weight)
    unilip = copy.deepcopy(llm)
    del unilip.layers[:-2]  # unilip/model/unilip_internvl.py:177
    del unilip.embed_tokens  # :178
    x, q = torch.randn(2, 7, 32), torch.randn(2, 5, 32)
    pos = torch.arange(12)[None].expand(2, -1)
    with torch.no_grad():
        ref = unilip(
            inputs_embeds=torch.cat([x, q], 1),
            attention_mask=torch.zeros(2, 1, 12, 12),
            position_ids=pos,
            output_hidden_states=True,
        ).hidden_states[-1]  # bidirectional (all-zero additive mask)
        ours = c(x, query_states=q).encoder_hidden_states
    torch.testing.assert_close(ours, c.proj_out(ref), atol=1e-5, rtol=1e-5)


def test_queries_start_standard_normal_as_unilip() -> None:
    torch.manual_seed(0)
    c = MuseConnector(
        condition_dim=64, caption_channels=8, num_queries=256, num_layers=1, hidden_size=64, num_attention_heads=4
    )
    std = c.query_embeds.detach().std().item()
    assert 0.9 < std < 1.1, std  # torch.randn(1, n_query, hidden_size) in UniLIP
    llm = _tiny_qwen(2)
    before = c.query_embeds.detach().clone()
    c2 = MuseConnector.from_llm_layers(llm, 1, caption_channels=8, num_queries=4)
    assert 0.5 < c2.query_embeds.detach().std().item() < 1.5  # not rescaled by the LLM copy
    assert torch.equal(c.query_embeds.detach(), before)


def test_from_llm_layers_needs_a_final_norm() -> None:
    llm = _tiny_qwen(2)
    llm.norm = torch.nn.Identity()
    with pytest.raises(ValueError, match="final RMSNorm"):
        MuseConnector.from_llm_layers(llm, 1, caption_channels=8)
