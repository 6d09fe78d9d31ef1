"""``cache_frozen_features``: per-image / per-caption memo of the frozen networks' outputs, exact and bounded."""

from __future__ import annotations

import torch

from muse_hf.training.tokenizer.feature_cache import FrozenFeatureCache, frozen_cache_key


class Counting:
    """A deterministic 'frozen network' that counts the images it sees."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen += pixels.shape[0]
        flat = pixels.flatten(1)
        return flat.softmax(-1)[:, None, :4], flat[:, :6] * 2


def test_cached_rows_equal_computed_rows_and_are_computed_once() -> None:
    net, cache = Counting(), FrozenFeatureCache(max_samples=100)
    images = torch.randn(6, 3, 4, 4)
    t1, f1 = cache.lookup(images[:4], net)
    assert net.seen == 4
    t2, f2 = cache.lookup(images[[3, 4, 0, 5]], net)  # two seen, two new: only the new ones are computed
    assert net.seen == 6 and (cache.hits, cache.misses) == (2, 6)
    ref_t, ref_f = Counting()(images[[3, 4, 0, 5]])
    assert torch.equal(t2, ref_t) and torch.equal(f2, ref_f)
    assert torch.equal(t1, Counting()(images[:4])[0])


def test_full_cache_still_returns_the_right_rows() -> None:
    net, cache = Counting(), FrozenFeatureCache(max_samples=1)
    images = torch.randn(3, 3, 4, 4)
    cache.lookup(images, net)
    t, f = cache.lookup(images, net)
    assert len(cache.images) == 1 and net.seen == 5  # one kept, two recomputed
    assert torch.equal(f, Counting()(images)[1])


def test_a_changed_image_is_a_new_key() -> None:
    x = torch.zeros(3, 4, 4)
    y = x.clone()
    y[0, 0, 0] = 1e-6
    assert FrozenFeatureCache.image_key(x) == FrozenFeatureCache.image_key(x.clone())
    assert FrozenFeatureCache.image_key(x) != FrozenFeatureCache.image_key(y)


def test_texts_are_embedded_once_each() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> torch.Tensor:
        calls.append(list(texts))
        return torch.stack([torch.full((3,), float(len(t))) for t in texts])

    cache = FrozenFeatureCache()
    out = cache.embed_texts(["a", "bb", "a"], embed)
    assert out[:, 0].tolist() == [1.0, 2.0, 1.0]
    cache.embed_texts(["bb", "ccc"], embed)
    assert calls == [["a", "bb"], ["ccc"]]


def test_shared_cache_is_per_key_and_the_key_follows_the_weights() -> None:
    FrozenFeatureCache.clear_shared()
    a = FrozenFeatureCache.shared("k1", 10)
    assert FrozenFeatureCache.shared("k1", 5) is a and FrozenFeatureCache.shared("k2", 5) is not a
    FrozenFeatureCache.clear_shared()
    net = torch.nn.Linear(2, 2)
    key = frozen_cache_key(net, [-1], 112, None)
    assert key == frozen_cache_key(net, [-1], 112, None)
    assert key != frozen_cache_key(net, [4, -1], 112, None) and key != frozen_cache_key(net, [-1], 224, None)
    with torch.no_grad():
        net.weight[0, 0] += 1.0
    assert key != frozen_cache_key(net, [-1], 112, None)
