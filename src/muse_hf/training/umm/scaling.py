"""The tokenizer's latent ``scaling_factor`` / ``shift_factor``, measured on data and stored in its ``config.json``
(``muse-hf compute-scaling --model PATH --data PATH``): the unified model's DiT sees normalised latents.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from muse_hf.data import load_image_text_stream, make_dataloader
from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.pipelines import LatentScaling, compute_latent_scaling

__all__ = ["compute_and_store_latent_scaling"]

logger = logging.getLogger(__name__)


def compute_and_store_latent_scaling(
    model: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "train",
    num_batches: int = 8,
    batch_size: int = 32,
    use_shift: bool = True,
    resolution: int | None = None,
    image_column: str | None = None,
) -> LatentScaling:
    """Measure the tokenizer's latent ``scaling_factor`` / ``shift_factor`` on data and write them into its
    ``config.json`` (the weights are not rewritten).

    Args:
        model: a saved ``MuseTokenizerModel`` folder.
        data: an image dataset (local folder / shards or Hub id), read with ``load_image_text_stream``.
        split: the split to read.
        num_batches: batches to measure (``num_batches * batch_size`` images).
        batch_size: images per batch.
        use_shift: also centre the latents (else ``shift_factor`` = 0 and the scale uses the RMS, as UniLIP/SANA).
        resolution: image side (default: the tokenizer's ``image_size``).
        image_column: the image column (default: auto-detected).

    Returns:
        The measured :class:`~muse_hf.pipelines.LatentScaling`.

    Raises:
        ValueError: ``model`` is not a saved tokenizer folder, or the data yields no batch.
    """
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ValueError(f"{model} is not a saved MUSE tokenizer folder (no config.json).")
    if num_batches < 1 or batch_size < 1:
        raise ValueError(f"num_batches and batch_size must be >= 1; got {num_batches}, {batch_size}.")
    vae = MuseTokenizerModel.from_pretrained(str(path)).eval()
    size = resolution or int(vae.config.image_size)
    processor = (
        MuseImageProcessor.from_pretrained(str(path), size={"height": size, "width": size})
        if (path / "preprocessor_config.json").is_file()
        else MuseImageProcessor(size={"height": size, "width": size})
    )
    stream = load_image_text_stream(
        str(data), split=split, image_processor=processor, image_column=image_column, with_label=False,
        with_mask=False, process_index=0, num_processes=1,
    )  # fmt: skip
    loader = make_dataloader(stream, batch_size, drop_last=False)
    stats = compute_latent_scaling(vae, loader, max_batches=num_batches, use_shift=use_shift)
    config = MuseTokenizerConfig.from_pretrained(str(path))
    config.scaling_factor = stats.scaling_factor
    config.shift_factor = stats.shift_factor
    config.save_pretrained(str(path))
    logger.info("Latent scaling of %s from %d images: scaling_factor=%.6g shift_factor=%.6g", path,
                stats.num_images, stats.scaling_factor, stats.shift_factor)  # fmt: skip
    return stats
