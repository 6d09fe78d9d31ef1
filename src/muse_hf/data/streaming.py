"""Streaming image-text (and image-editing) loaders over ``datasets`` streaming, robust to bad samples.

The public face of the streaming modules; every name below imports from here as it always did:

* :mod:`muse_hf.data.decoding`: guarded image decoding and the skip rules (:func:`decode_image`,
  :class:`SkipSample`, :data:`SKIP_REASONS`, :data:`DEFAULT_MAX_PIXELS`);
* :mod:`muse_hf.data.sources`: opening local shards, webdataset tars, ``datasets`` objects or Hub ids, column
  detection (:data:`IMAGE_COLUMNS`, :data:`CAPTION_COLUMNS`, ...) and the per-process split;
* :mod:`muse_hf.data.streams`: :class:`ImageTextStream`, :func:`load_image_text_stream`, :func:`load_edit_stream`
  and the :class:`StreamOptions` they share;
* :mod:`muse_hf.data.tensor_streams`: stored tensors (:class:`TensorShardWriter`, :func:`write_tensor_shard`,
  :class:`TensorRowStream`, :func:`load_tensor_stream`);
* :mod:`muse_hf.data.dataloader`: batching with skip accounting and exact resume (:func:`make_dataloader`,
  :class:`StreamingDataLoader`, :func:`collate_samples`).
"""

from __future__ import annotations

from muse_hf.data.dataloader import StreamingDataLoader, collate_samples, make_dataloader
from muse_hf.data.decoding import DEFAULT_MAX_PIXELS, SKIP_REASONS, TEXT_FIELDS, SkipSample, decode_image
from muse_hf.data.sources import (
    CAPTION_COLUMNS,
    EDIT_SOURCE_COLUMNS,
    EDIT_TARGET_COLUMNS,
    EDIT_TEXT_COLUMNS,
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    MASK_COLUMNS,
)
from muse_hf.data.streams import ImageTextStream, StreamOptions, load_edit_stream, load_image_text_stream
from muse_hf.data.tensor_streams import (
    SHAPE_SUFFIX,
    TensorRowStream,
    TensorShardWriter,
    load_tensor_stream,
    write_tensor_shard,
)

__all__ = [
    "CAPTION_COLUMNS",
    "DEFAULT_MAX_PIXELS",
    "EDIT_SOURCE_COLUMNS",
    "EDIT_TARGET_COLUMNS",
    "EDIT_TEXT_COLUMNS",
    "IMAGE_COLUMNS",
    "LABEL_COLUMNS",
    "MASK_COLUMNS",
    "SHAPE_SUFFIX",
    "SKIP_REASONS",
    "TEXT_FIELDS",
    "ImageTextStream",
    "SkipSample",
    "StreamOptions",
    "StreamingDataLoader",
    "TensorRowStream",
    "TensorShardWriter",
    "collate_samples",
    "decode_image",
    "load_edit_stream",
    "load_image_text_stream",
    "load_tensor_stream",
    "make_dataloader",
    "write_tensor_shard",
]
