"""muse_hf.evaluation: tokenizer metrics with floors, attention segmentation, the GenEval-style scorer, reports.

Entry points: :func:`evaluate_tokenizer` (CLI: ``examples/evaluate.py`` / ``muse-hf evaluate``), the evaluators of saved
folders :func:`evaluate_saved_tokenizer` / :func:`evaluate_saved_pipeline` (:mod:`muse_hf.evaluation.saved`) and the
GenEval-style check of :mod:`muse_hf.evaluation.geneval`.
"""

from muse_hf.evaluation.batch_metrics import measure_throughput
from muse_hf.evaluation.evaluate import evaluate_tokenizer
from muse_hf.evaluation.metrics import (
    PSNR_CAP_DB,
    FIDInceptionV3,
    RFIDAccumulator,
    bicubic_roundtrip,
    linear_probe_accuracy,
    majority_class_accuracy,
    psnr,
    reconstruction_fid,
    ssim,
    zero_shot_accuracy,
    zero_shot_predict,
)
from muse_hf.evaluation.report import (
    METRIC_SPECS,
    metric_entry,
    render_report,
    unavailable_entry,
    write_report,
)
from muse_hf.evaluation.roundtrip import roundtrip_entry, roundtrip_geneval
from muse_hf.evaluation.saved import evaluate_saved_pipeline, evaluate_saved_tokenizer
from muse_hf.evaluation.segmentation import (
    SEGMENTATION_METHOD,
    attention_segmentation,
    colour_segmentation,
    match_segments,
)

__all__ = [
    "FIDInceptionV3",
    "METRIC_SPECS",
    "PSNR_CAP_DB",
    "RFIDAccumulator",
    "SEGMENTATION_METHOD",
    "attention_segmentation",
    "bicubic_roundtrip",
    "colour_segmentation",
    "evaluate_saved_pipeline",
    "evaluate_saved_tokenizer",
    "evaluate_tokenizer",
    "linear_probe_accuracy",
    "majority_class_accuracy",
    "match_segments",
    "measure_throughput",
    "metric_entry",
    "psnr",
    "reconstruction_fid",
    "render_report",
    "roundtrip_entry",
    "roundtrip_geneval",
    "ssim",
    "unavailable_entry",
    "write_report",
    "zero_shot_accuracy",
    "zero_shot_predict",
]
