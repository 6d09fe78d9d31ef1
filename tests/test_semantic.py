"""Text embedders, logit scale and the semantic InfoNCE loss (issue 3, items 3-4)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    SiglipTextConfig,
    SiglipTextModel,
)

from muse_hf.objectives import (
    CLIPTextEmbedder,
    LogitScale,
    SentenceTransformerEmbedder,
    SiglipTextEmbedder,
    caption_ids,
    default_text_embedder_path,
    load_text_embedder,
    semantic_nce_loss,
)

SQ2 = math.sqrt(2.0)
# image i = e_i; texts t0 = e0, t1 = e1, t2 = (e1 + e2)/sqrt(2); scale 2 -> logits 2*cos
IMAGES = torch.eye(3)
TEXTS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # t2 unnormalised on purpose


def _nll(pos: float, others: list[float]) -> float:
    return -math.log(math.exp(pos) / (math.exp(pos) + sum(math.exp(o) for o in others)))


def test_nce_matches_hand_computed_3x3():
    # logits = 2 * [[1, 0, 0], [0, 1, 1/sqrt2], [0, 0, 1/sqrt2]]
    i2t = [_nll(2, [0, 0]), _nll(2, [0, SQ2]), _nll(SQ2, [0, 0])]
    t2i = [_nll(2, [0, 0]), _nll(2, [0, 0]), _nll(SQ2, [0, SQ2])]
    expected = 0.5 * (sum(i2t) / 3 + sum(t2i) / 3)
    loss = semantic_nce_loss(IMAGES * 5.0, TEXTS, logit_scale=2.0)  # inputs are L2-normalised inside
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert semantic_nce_loss(IMAGES, TEXTS, torch.tensor(2.0)).item() == pytest.approx(expected, rel=1e-6)


def test_duplicate_captions_are_not_negatives():
    captions = ["a red circle", "a blue square", "a red circle"]
    # pairs (0, 2) and (2, 0) leave both softmaxes
    i2t = [_nll(2, [0]), _nll(2, [0, SQ2]), _nll(SQ2, [0])]
    t2i = [_nll(2, [0]), _nll(2, [0, 0]), _nll(SQ2, [SQ2])]
    expected = 0.5 * (sum(i2t) / 3 + sum(t2i) / 3)
    masked = semantic_nce_loss(IMAGES, TEXTS, 2.0, captions=captions)
    assert masked.item() == pytest.approx(expected, rel=1e-6)
    unmasked = semantic_nce_loss(IMAGES, TEXTS, 2.0)
    assert masked.item() < unmasked.item()
    # integer ids behave like the strings they hash
    by_ids = semantic_nce_loss(IMAGES, TEXTS, 2.0, captions=caption_ids(captions))
    assert by_ids.item() == masked.item()
    assert caption_ids(["x", "y", "x"]).tolist()[0] == caption_ids(["x"]).item()


def test_logit_scale_module_gradients_and_clamp():
    scale = LogitScale()
    assert scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    img = torch.randn(4, 8, requires_grad=True)
    loss = semantic_nce_loss(img, torch.randn(4, 8), scale)
    loss.backward()
    assert scale.log_scale.grad is not None and scale.log_scale.grad.abs() > 0
    assert img.grad.abs().sum() > 0
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert scale().item() == pytest.approx(100.0, rel=1e-6)
    with pytest.raises(ValueError):
        LogitScale(init=200.0, max=100.0)


def test_nce_input_validation():
    with pytest.raises(ValueError, match="semantic_dim"):
        semantic_nce_loss(torch.randn(3, 8), torch.randn(3, 4), 1.0)
    with pytest.raises(ValueError, match="captions"):
        semantic_nce_loss(torch.randn(3, 4), torch.randn(3, 4), 1.0, captions=["a", "b"])


# ------------------------------------------------------------------------ text embedders


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(str(default_text_embedder_path()))


@pytest.fixture(scope="module")
def tiny_clip_text(tmp_path_factory, minilm_tokenizer) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip_text")
    config = CLIPTextConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=24,
        max_position_embeddings=40,
        pad_token_id=minilm_tokenizer.pad_token_id,
        eos_token_id=minilm_tokenizer.sep_token_id,
    )
    CLIPTextModelWithProjection(config).save_pretrained(path)
    minilm_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_siglip_text(tmp_path_factory, minilm_tokenizer) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("siglip_text")
    config = SiglipTextConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        projection_size=20,
        pad_token_id=minilm_tokenizer.pad_token_id,
    )
    SiglipTextModel(config).save_pretrained(path)
    minilm_tokenizer.save_pretrained(path)
    return str(path)


def _check_embedder(embedder, dim: int) -> None:
    texts = ["a red circle", "two blue squares", "a red circle"]
    out = embedder.embed(texts)
    assert out.shape == (3, dim) and embedder.dim == dim
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out[0], out[2])
    assert not torch.allclose(out[0], out[1])
    assert not out.requires_grad


def test_clip_text_embedder(tiny_clip_text):
    embedder = load_text_embedder(tiny_clip_text)
    assert isinstance(embedder, CLIPTextEmbedder)
    _check_embedder(embedder, 24)
    # the embedding is the model's own projected EOS output
    enc = embedder.tokenizer(["a red circle"], return_tensors="pt")
    direct = embedder.model(**enc).text_embeds
    torch.testing.assert_close(embedder.embed(["a red circle"]), torch.nn.functional.normalize(direct, dim=-1))


def test_siglip_text_embedder(tiny_siglip_text):
    embedder = load_text_embedder(tiny_siglip_text, cache_size=0)
    assert isinstance(embedder, SiglipTextEmbedder)
    _check_embedder(embedder, 20)
    assert embedder.padding == "max_length" and embedder.max_length == 16


def test_cache_is_used_and_bounded(tiny_clip_text):
    embedder = CLIPTextEmbedder.from_pretrained(tiny_clip_text, cache_size=2)
    calls: list[list[str]] = []
    encode = embedder._encode
    embedder._encode = lambda texts: calls.append(list(texts)) or encode(texts)
    first = embedder.embed(["a", "b", "a"])
    assert calls == [["a", "b"]]
    second = embedder.embed(["b", "a"])
    assert calls == [["a", "b"]]  # both cached
    torch.testing.assert_close(second, first[[1, 0]])
    embedder.embed(["c"])  # evicts the least recently used ("b" was used before "a")
    assert list(embedder._cache) == ["a", "c"]
    assert embedder.to("cpu").embed(["b"]).device.type == "cpu"
    assert calls[-1] == ["b"]
    with pytest.raises(ValueError, match="list of strings"):
        embedder.embed("a")


def test_packaged_minilm_orders_captions_by_meaning():
    embedder = load_text_embedder()
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.dim == 384
    emb = embedder.embed(["a red circle on the left", "a red round disc at the left side", "a dog running on grass"])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    similar, dissimilar = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > dissimilar + 0.2


def test_missing_text_model_error(tmp_path):
    with pytest.raises(OSError, match="packaged MiniLM"):
        load_text_embedder(tmp_path / "nothing-here")


def test_nce_is_float32_under_autocast():
    torch.manual_seed(5)
    img, txt = torch.randn(64, 32), torch.randn(64, 32)
    reference = semantic_nce_loss(img, txt, 100.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = semantic_nce_loss(img, txt, 100.0)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference, rtol=1e-6, atol=1e-6)
