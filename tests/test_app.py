"""The Gradio demo (app.py) served on 127.0.0.1 with tiny models and driven through gradio_client: every
endpoint's outputs are checked, and bad uploads get error messages while the server keeps serving. Plus the
upload validation, the page without models, and the Space front-matter. (tests/test_browser.py starts
``python app.py`` as a subprocess and drives it with a real browser.)"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import PIL.Image
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import app  # noqa: E402
from muse_hf.demo import models as demo_models  # noqa: E402

ENDPOINTS = {"/reconstruct", "/structure", "/scene", "/generate", "/edit", "/edit_reset", "/understand"}
SIZE = 32  # the tiny models' image size (tests/test_pipeline_muse.py)


# ------------------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming ``width x height`` RGB pixels with a tiny, truncated data stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def photo(path: Path, size: tuple[int, int] = (80, 60)) -> Path:
    """A crop of scikit-image's astronaut photo (W x H = ``size``)."""
    import skimage.data

    PIL.Image.fromarray(skimage.data.astronaut()[100:400, 50:450]).resize(size).save(path)
    return path


def save_tiny_models(folder: Path) -> dict[str, Path]:
    """The tiny InternVL pipeline (chat-capable), its tokenizer (+ image processor) and a tiny DINOv2 teacher."""
    from test_pipeline_muse import make_internvl_pipeline
    from transformers import Dinov2Config, Dinov2Model

    pipe = make_internvl_pipeline()
    paths = {"pipeline": folder / "pipeline", "tokenizer": folder / "tokenizer", "teacher": folder / "teacher"}
    pipe.save_pretrained(paths["pipeline"])
    pipe.vae.save_pretrained(paths["tokenizer"])
    pipe.image_processor.save_pretrained(paths["tokenizer"])
    torch.manual_seed(0)
    Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=4,
            image_size=32,
        )
    ).save_pretrained(paths["teacher"])
    return paths


def as_image(path: str) -> PIL.Image.Image:
    with PIL.Image.open(path) as im:
        return im.convert("RGB")


def unit(image: PIL.Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def message_kinds(messages: list[dict]) -> list[tuple[str, str]]:
    """(role, 'text' | 'image') for each chatbot message returned by gradio_client."""
    kinds = []
    for m in messages:
        (content,) = m["content"]
        kinds.append((m["role"], "image" if content.get("component") == "image" else "text"))
    return kinds


# ------------------------------------------------------------------------------------------------ server
@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("app_inputs")
    bad = folder / "notes.png"
    bad.write_text("this is a text file, not an image\n" * 4)
    return {
        "photo": photo(folder / "astronaut.png"),
        "small": photo(folder / "small.png", (48, 40)),
        "text_as_png": bad,
        "bomb": header_only_png(folder / "huge.png", 20000, 20000),
        "too_wide": header_only_png(folder / "wide.png", 5000, 100),
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """app.py's demo served on a free 127.0.0.1 port from this process (tests/test_browser.py starts
    ``python app.py`` as a subprocess), on the tiny chat-capable pipeline, its tokenizer and a tiny teacher."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread hand-offs dominate on a shared machine
    paths = save_tiny_models(tmp_path_factory.mktemp("app_models"))
    models = app.load_demo_models(
        model=str(paths["tokenizer"]),
        pipeline=str(paths["pipeline"]),
        teacher=str(paths["teacher"]),
        device="cpu",
        teacher_image_size=32,
    )
    demo = app.build_demo(models=models)
    app.launch_demo(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()
        torch.set_num_threads(threads)


def test_every_endpoint_is_exposed(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == ENDPOINTS


def test_reconstruct(client: Client, files: dict[str, Path]) -> None:
    view, recon, latent, metrics = client.predict(handle_file(files["photo"]), api_name="/reconstruct")
    view, recon = as_image(view), as_image(recon)
    assert view.size == recon.size == (SIZE, SIZE)
    assert metrics["image_size"] == [SIZE, SIZE]
    assert metrics["latent_shape"] == [8, SIZE // 8, SIZE // 8]
    assert metrics["compression"] == 8
    assert 0.0 < metrics["psnr_db"] < 100.0 and -1.0 <= metrics["ssim"] <= 1.0
    # the reported PSNR is the PSNR of the two returned images (up to their 8-bit quantisation)
    from muse_hf.evaluation.metrics import psnr

    assert float(psnr(unit(recon), unit(view))[0]) == pytest.approx(metrics["psnr_db"], abs=0.2)
    assert as_image(latent).size[0] >= 64  # one tile per latent channel


def test_structure_point_pooled_and_teachers(client: Client, files: dict[str, Path]) -> None:
    # 80x60 photo -> centre 60x60 crop (left 10) -> 4x4 grid; x=0.25 -> 20 px -> column 0; y=0.8 -> row 3
    student, teacher, note = client.predict(handle_file(files["photo"]), "point", 0.25, 0.8, 0, api_name="/structure")
    assert as_image(student).size == as_image(teacher).size == (app.DISPLAY_SIZE, app.DISPLAY_SIZE)
    assert "token (3, 0) of the 4x4 grid" in note and "teacher" in note.lower() and "KL" in note
    _, teacher_img, pooled_note = client.predict(
        handle_file(files["photo"]), "pooled", 0.5, 0.5, 0, api_name="/structure"
    )
    assert "pooled query" in pooled_note and teacher_img is not None
    # a synthetic scene comes with instance masks: its teacher is the mask affinity
    scene, scene_note = client.predict(3, api_name="/scene")
    assert as_image(scene).size == (SIZE, SIZE) and scene_note.startswith("Scene:")
    _, mask_teacher, mask_note = client.predict(handle_file(scene), "point", 0.5, 0.5, 0, api_name="/structure")
    assert "mask affinity" in mask_note and mask_teacher is not None
    with pytest.raises(AppError, match="5"):
        client.predict(handle_file(files["photo"]), "point", 0.5, 0.5, 5, api_name="/structure")


def test_generate_is_seeded(client: Client) -> None:
    a = as_image(client.predict("a red circle left of a blue square", 2, 3.0, 7, api_name="/generate"))
    b = as_image(client.predict("a red circle left of a blue square", 2, 3.0, 7, api_name="/generate"))
    c = as_image(client.predict("a red circle left of a blue square", 2, 3.0, 8, api_name="/generate"))
    assert a.size == (SIZE, SIZE)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_edit_is_multi_turn(client: Client, files: dict[str, Path]) -> None:
    client.predict(api_name="/edit_reset")
    (
        first,
        messages,
    ) = client.predict(handle_file(files["small"]), "make the circle green", 2, 2.0, 0, api_name="/edit")
    assert as_image(first).size == (48, 40)  # editing keeps the input's size
    assert message_kinds(messages) == [("user", "image"), ("user", "text"), ("assistant", "image")]
    second, messages = client.predict(handle_file(files["small"]), "move it left", 2, 2.0, 0, api_name="/edit")
    assert len(messages) == 5 and messages[3]["content"][0]["text"] == "move it left"
    assert not np.array_equal(np.asarray(as_image(first)), np.asarray(as_image(second)))
    (
        _,
        messages,
    ) = client.predict(api_name="/edit_reset")
    assert messages == []
    _, messages = client.predict(handle_file(files["small"]), "make it blue", 2, 2.0, 0, api_name="/edit")
    assert len(messages) == 3  # a fresh conversation


def test_understand(client: Client, files: dict[str, Path]) -> None:
    messages = client.predict(handle_file(files["photo"]), "what is in the image?", 3, api_name="/understand")
    assert message_kinds(messages) == [("user", "image"), ("user", "text"), ("assistant", "text")]
    assert messages[2]["content"][0]["text"].strip()


@pytest.mark.parametrize(
    ("upload", "message"),
    [("text_as_png", "is not an image that can be decoded"), ("bomb", "too large"), ("too_wide", "5000x100")],
)
def test_bad_uploads_get_errors_and_server_keeps_serving(
    client: Client, files: dict[str, Path], upload: str, message: str
) -> None:
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(files[upload]), api_name="/reconstruct")
    _, recon, _, metrics = client.predict(handle_file(files["photo"]), api_name="/reconstruct")
    assert as_image(recon).size == (SIZE, SIZE) and metrics["psnr_db"] > 0


def test_refused_upload_logs_one_line_not_a_traceback(
    client: Client, files: dict[str, Path], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muse_demo")
    capfd.readouterr()
    with pytest.raises(AppError, match="is not an image that can be decoded"):
        client.predict(handle_file(files["text_as_png"]), api_name="/reconstruct")
    assert "Traceback" not in capfd.readouterr().err
    refused = [r.getMessage() for r in caplog.records if r.name == "muse_demo" and r.getMessage().startswith("refused")]
    assert len(refused) == 1 and "notes.png" in refused[0] and "\n" not in refused[0]


def test_bad_text_and_numbers_get_errors(client: Client, files: dict[str, Path]) -> None:
    with pytest.raises(AppError, match="Please enter a prompt"):
        client.predict("   ", 2, 3.0, 0, api_name="/generate")
    with pytest.raises(AppError, match="Please enter an edit instruction"):
        client.predict(handle_file(files["photo"]), " ", 1, 1.0, 0, api_name="/edit")
    with pytest.raises(AppError, match="the limit is 500"):
        client.predict("x" * 501, 2, 3.0, 0, api_name="/generate")
    with pytest.raises(AppError, match="less than minimum value 1|Steps must be between 1"):
        client.predict("a circle", 0, 3.0, 0, api_name="/generate")
    with pytest.raises(AppError, match="Please upload an image"):
        client.predict(None, api_name="/reconstruct")
    assert as_image(client.predict("a circle", 1, 1.0, 0, api_name="/generate")).size == (SIZE, SIZE)


# ------------------------------------------------------------------------------------------------ in-process
def test_load_image_file(tmp_path: Path, files: dict[str, Path]) -> None:
    rgba = PIL.Image.new("RGBA", (10, 6), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    PIL.Image.fromarray(noise).save(tmp_path / "noise.png")
    out = app.load_image_file(tmp_path / "clear.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    PIL.Image.new("I;16", (4, 4), 1000).save(tmp_path / "deep.png")
    assert app.load_image_file(tmp_path / "deep.png").mode == "RGB"
    PIL.Image.new("RGB", (16, 16)).save(tmp_path / "icon.ico")
    with pytest.raises(gr.Error, match="ICO file"):
        app.load_image_file(tmp_path / "icon.ico")
    data = (tmp_path / "noise.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        app.load_image_file(tmp_path / "cut.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(gr.Error, match="empty"):
        app.load_image_file(tmp_path / "empty.png")
    with pytest.raises(gr.Error, match="too large"):
        app.load_image_file(files["bomb"])


def test_page_without_models_says_how_to_make_them(monkeypatch, tmp_path: Path) -> None:
    for env in (app.ENV_MODEL, app.ENV_PIPELINE, app.ENV_TEACHER):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(demo_models, "DEFAULT_TOKENIZER", str(tmp_path / "none" / "tokenizer"))
    monkeypatch.setattr(demo_models, "DEFAULT_PIPELINE", str(tmp_path / "none" / "pipeline"))
    models = app.load_demo_models()
    assert models.tokenizer is None and models.pipeline is None
    demo = app.build_demo(models=models)
    markdown = " ".join(
        str(c.get("props", {}).get("value", "")) for c in demo.config["components"] if c.get("type") == "markdown"
    )
    assert "make quickstart" in markdown and "--model PATH_OR_HUB_ID" in markdown
    tabs = [c["props"].get("label") for c in demo.config["components"] if c.get("type") == "tabitem"]
    assert tabs == ["Reconstruct", "Structure", "Generate", "Edit"]  # no Understand without an image-aware mllm
    with pytest.raises(gr.Error, match="make quickstart"):
        app.MuseDemo(models).reconstruct(PIL.Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match="Could not load the tokenizer"):
        app.load_demo_models(model=str(tmp_path / "missing"))


def test_text_only_pipeline_hides_understand() -> None:
    from test_pipeline_muse import make_text_pipeline

    demo = app.build_demo(pipeline=make_text_pipeline(), model=None, teacher=None)
    tabs = [c["props"].get("label") for c in demo.config["components"] if c.get("type") == "tabitem"]
    assert "Understand" not in tabs and "Generate" in tabs
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert "understand" not in names and "generate" in names


def test_space_front_matter() -> None:
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(REPO / "spaces" / "README.md", ignore_metadata_errors=False)
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.sdk_version == gr.__version__
    requirements = (REPO / "spaces" / "requirements.txt").read_text()
    assert "torch" in requirements and "transformers" in requirements
