"""MUSE demo: a Gradio app (and Hugging Face Space) for the MUSE tokenizer and unified model.

The page (:func:`build_demo`), its command line (:func:`main`, ``python app.py``; the Space's own entry point, so it
stays beside the page rather than in :mod:`muse_hf.cli`) and :func:`launch_demo`. The computations are
:class:`muse_hf.demo.session.MuseDemo`'s.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import PIL.Image
import skimage.data
import torch

from muse_hf.demo.inputs import (
    MAX_GUIDANCE,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MAX_UPLOAD_BYTES,
    SafeImage,
    require_image,
)
from muse_hf.demo.models import (
    DEFAULT_PIPELINE,
    DEFAULT_TOKENIZER,
    ENV_MODEL,
    ENV_PIPELINE,
    ENV_TEACHER,
    DemoModels,
    load_demo_models,
)
from muse_hf.demo.session import MuseDemo

__all__ = ["CONCURRENCY_LIMIT", "DEMO_CSS", "QUEUE_MAX_SIZE", "build_demo", "launch_demo", "main", "parse_args"]

CONCURRENCY_LIMIT = 1  # tokenizer events; pipeline events always run one at a time (scheduler state)
QUEUE_MAX_SIZE = 32
#: Small model outputs (e.g. 64 px) are shown scaled up with visible pixels instead of as a thumbnail.
DEMO_CSS = """
.pixelated img { image-rendering: pixelated; width: 100% !important; height: 100% !important; object-fit: contain; }
"""

logger = logging.getLogger("muse_demo")


def _example_photos() -> list[str]:
    """A few scikit-image sample photos written as PNGs (for gr.Examples)."""
    folder = Path(tempfile.gettempdir()) / "muse_demo_examples"
    folder.mkdir(exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        path = folder / f"{name}.png"
        if not path.exists():
            PIL.Image.fromarray(getattr(skimage.data, name)()).save(path)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------------------------------------ UI
def _header(models: DemoModels) -> str:
    lines = [
        "# MUSE — unified visual tokenizer and multimodal model",
        "Reconstruct images, inspect the Synergistic Blocks' attention topology, generate, edit"
        + (" and ask questions." if models.can_chat else "."),
    ]
    for part in ("tokenizer", "pipeline", "teacher"):
        if part in models.sources:
            lines.append(f"- **{part}**: `{models.sources[part]}`")
    if models.notices:
        lines.append("")
        lines += [f"> ⚠️ {notice}" for notice in models.notices.values()]
    return "\n".join(lines)


def build_demo(
    model: Any = None,
    pipeline: Any = None,
    teacher: Any = None,
    *,
    models: DemoModels | None = None,
    device: str | None = None,
    concurrency_limit: int = CONCURRENCY_LIMIT,
    queue_max_size: int = QUEUE_MAX_SIZE,
) -> gr.Blocks:
    """Build the demo.

    Args:
        model: tokenizer source (path, Hub id or ``MuseTokenizerModel``), see :func:`load_demo_models`.
        pipeline: pipeline source (path, Hub id or ``MusePipeline``).
        teacher: structural teacher source, optional.
        models: already loaded models (then ``model`` / ``pipeline`` / ``teacher`` are ignored).
        device: device for loading.
        concurrency_limit: events of the tokenizer tabs run at most this many at a time; pipeline events
            (Generate, Edit, Understand) share one queue and run one at a time.
        queue_max_size: requests waiting beyond this are refused.

    Returns:
        The ``gr.Blocks`` app with its queue configured; serve it with :func:`launch_demo` (``.launch()`` works
        too, without the upload cap and CSS).
    """
    models = models or load_demo_models(model, pipeline, teacher, device=device)
    demo_logic = MuseDemo(models)
    has_tok, has_pipe = models.tokenizer is not None, models.pipeline is not None
    native = models.native_size if has_tok else None
    examples = _example_photos()
    tok_queue = {"concurrency_limit": concurrency_limit, "concurrency_id": "tokenizer"}
    pipe_queue = {"concurrency_limit": 1, "concurrency_id": "pipeline"}

    def missing(part: str) -> gr.Markdown:
        return gr.Markdown(f"> ⚠️ {models.notices.get(part, '')}", visible=part in models.notices)

    with gr.Blocks(title="MUSE demo", analytics_enabled=False) as demo:
        gr.Markdown(_header(models), elem_id="header")
        with gr.Tabs():
            # ---------------------------------------------------------------- Reconstruct
            with gr.Tab("Reconstruct", id="reconstruct"):
                missing("tokenizer")
                gr.Markdown(
                    "Encode an image to MUSE latents and decode it back"
                    + (f" (at {native[0]}x{native[1]}: the image is centre-cropped and resized)." if native else ".")
                )
                with gr.Row():
                    rec_in = SafeImage(label="Image", elem_id="reconstruct-input", height=320)
                    with gr.Column():
                        rec_view = gr.Image(
                            label="Model input",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=200,
                            elem_id="reconstruct-view",
                            elem_classes="pixelated",
                        )
                        rec_out = gr.Image(
                            label="Reconstruction",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=200,
                            elem_id="reconstruct-output",
                            elem_classes="pixelated",
                        )
                    with gr.Column():
                        rec_latent = gr.Image(
                            label="Latent channels (first 16, each min-max normalised)",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=240,
                            elem_classes="pixelated",
                        )
                        rec_metrics = gr.JSON(label="Metrics", elem_id="reconstruct-metrics")
                rec_btn = gr.Button("Reconstruct", variant="primary", interactive=has_tok, elem_id="reconstruct-button")
                if examples:
                    gr.Examples(examples, inputs=rec_in, label="scikit-image photos")

                def do_reconstruct(image: PIL.Image.Image | None, progress: gr.Progress = gr.Progress()) -> tuple:
                    return demo_logic.reconstruct(image, progress)

                rec_btn.click(
                    do_reconstruct,
                    rec_in,
                    [rec_view, rec_out, rec_latent, rec_metrics],
                    api_name="reconstruct",
                    **tok_queue,
                )

            # ---------------------------------------------------------------- Structure
            with gr.Tab("Structure", id="structure"):
                missing("tokenizer")
                gr.Markdown(
                    "Click a point on the image to see where that token attends in the student (a "
                    "synergistic block's topology stream) and in the structural teacher; or choose the "
                    "pooled query. *Sample a synthetic scene* gives an image with instance masks, whose "
                    "mask-affinity attention is the teacher the embedded model was trained against."
                )
                scene_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        st_in = SafeImage(label="Image (click a point)", elem_id="structure-input", height=320)
                        with gr.Row():
                            st_query = gr.Radio(["point", "pooled"], value="point", label="Query")
                            layers = demo_logic.topology_layers
                            st_layer = gr.Dropdown(
                                layers or [0], value=(layers or [0])[-1], label="Block", interactive=bool(layers)
                            )
                        with gr.Row():
                            st_x = gr.Slider(
                                0, 1, value=0.5, step=0.01, label="x (fraction of width)", elem_id="structure-x"
                            )
                            st_y = gr.Slider(
                                0, 1, value=0.5, step=0.01, label="y (fraction of height)", elem_id="structure-y"
                            )
                        with gr.Row():
                            st_seed = gr.Number(0, label="Scene seed", precision=0, minimum=0, maximum=MAX_SEED)
                            st_scene_btn = gr.Button(
                                "Sample a synthetic scene",
                                interactive=has_tok and demo_logic.scene_render is not None,
                            )
                        st_btn = gr.Button("Show attention", variant="primary", interactive=has_tok)
                    st_student = gr.Image(
                        label="Student (MUSE topology)",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=320,
                        elem_id="structure-student",
                    )
                    st_teacher = gr.Image(
                        label="Teacher",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=320,
                        elem_id="structure-teacher",
                    )
                st_note = gr.Markdown(elem_id="structure-note")
                if examples:
                    gr.Examples(examples, inputs=st_in, label="scikit-image photos")
                st_inputs = [st_in, st_query, st_x, st_y, st_layer, scene_state]
                st_outputs = [st_student, st_teacher, st_note]

                def do_structure(image, query, x, y, layer, scene, progress: gr.Progress = gr.Progress()) -> tuple:
                    return demo_logic.structure(image, query, x, y, layer, scene, progress)

                def do_scene(seed: Any) -> tuple[PIL.Image.Image, dict[str, Any], str]:
                    image, state = demo_logic.sample_scene(seed)
                    return image, state, f"Scene: *{state['caption']}*"

                def on_select(image: PIL.Image.Image | None, evt: gr.SelectData) -> tuple[float, float, str]:
                    image = require_image(image)
                    px, py = evt.index[0], evt.index[1]
                    return (
                        round(min(max(px / image.size[0], 0.0), 1.0), 4),
                        round(min(max(py / image.size[1], 0.0), 1.0), 4),
                        "point",
                    )

                st_btn.click(do_structure, st_inputs, st_outputs, api_name="structure", **tok_queue)
                st_scene_btn.click(
                    do_scene, st_seed, [st_in, scene_state, st_note], api_name="scene", **tok_queue
                ).then(do_structure, st_inputs, st_outputs, api_visibility="private", **tok_queue)
                st_in.select(on_select, st_in, [st_x, st_y, st_query], api_visibility="private", **tok_queue).then(
                    do_structure, st_inputs, st_outputs, api_visibility="private", **tok_queue
                )

            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                missing("pipeline")
                with gr.Row():
                    with gr.Column():
                        gen_prompt = gr.Textbox(
                            label="Prompt",
                            value="a red circle left of a blue square",
                            max_length=MAX_PROMPT_CHARS,
                            lines=2,
                        )
                        gen_steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps")
                        gen_guidance = gr.Slider(0, MAX_GUIDANCE, value=4.5, step=0.5, label="Guidance scale")
                        gen_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                        gen_btn = gr.Button("Generate", variant="primary", interactive=has_pipe)
                    gen_out = gr.Image(
                        label="Generated",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=320,
                        elem_classes="pixelated",
                    )

                def do_generate(prompt, steps, guidance, seed, progress: gr.Progress = gr.Progress()):
                    return demo_logic.generate(prompt, steps, guidance, seed, progress)

                gen_btn.click(
                    do_generate,
                    [gen_prompt, gen_steps, gen_guidance, gen_seed],
                    gen_out,
                    api_name="generate",
                    **pipe_queue,
                )

            # ---------------------------------------------------------------- Edit
            with gr.Tab("Edit", id="edit"):
                missing("pipeline")
                gr.Markdown(
                    "Each instruction edits the latest result; uploading another image starts a new conversation."
                )
                edit_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        edit_in = SafeImage(label="Image to edit", height=256)
                        edit_instr = gr.Textbox(
                            label="Instruction", value="make the circle green", max_length=MAX_PROMPT_CHARS
                        )
                        with gr.Row():
                            edit_steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps")
                            edit_guidance = gr.Slider(0, MAX_GUIDANCE, value=4.5, step=0.5, label="Guidance")
                            edit_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                        with gr.Row():
                            edit_btn = gr.Button("Edit", variant="primary", interactive=has_pipe)
                            edit_reset = gr.Button("New conversation")
                    with gr.Column():
                        edit_out = gr.Image(
                            label="Latest result",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=256,
                            elem_classes="pixelated",
                        )
                        edit_chat = gr.Chatbot(label="Conversation", height=320)

                def do_edit(image, instruction, steps, guidance, seed, session, progress: gr.Progress = gr.Progress()):
                    return demo_logic.edit(image, instruction, steps, guidance, seed, session, progress)

                def do_edit_reset() -> tuple[None, list, None]:
                    return None, [], None

                edit_btn.click(
                    do_edit,
                    [edit_in, edit_instr, edit_steps, edit_guidance, edit_seed, edit_state],
                    [edit_out, edit_chat, edit_state],
                    api_name="edit",
                    **pipe_queue,
                )
                edit_reset.click(do_edit_reset, None, [edit_out, edit_chat, edit_state], api_name="edit_reset")

            # ---------------------------------------------------------------- Understand
            if models.can_chat:
                with gr.Tab("Understand", id="understand"):
                    chat_state = gr.State(None)
                    with gr.Row():
                        with gr.Column():
                            chat_in = SafeImage(label="Image", height=256)
                            chat_q = gr.Textbox(
                                label="Question", value="What is in this image?", max_length=MAX_PROMPT_CHARS
                            )
                            chat_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="Max new tokens")
                            chat_btn = gr.Button("Ask", variant="primary")
                        chat_log = gr.Chatbot(label="Conversation", height=400)

                    def do_understand(image, question, max_new_tokens, session, progress: gr.Progress = gr.Progress()):
                        return demo_logic.understand(image, question, max_new_tokens, session, progress)

                    chat_btn.click(
                        do_understand,
                        [chat_in, chat_q, chat_tokens, chat_state],
                        [chat_log, chat_state],
                        api_name="understand",
                        **pipe_queue,
                    )
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=queue_max_size)
    return demo


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of ``python app.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=f"tokenizer folder or Hub id (default: ${ENV_MODEL} or {DEFAULT_TOKENIZER})")
    parser.add_argument(
        "--pipeline", help=f"pipeline folder or Hub id (default: ${ENV_PIPELINE} or {DEFAULT_PIPELINE})"
    )
    parser.add_argument(
        "--teacher", help=f"structural teacher (DINOv3/DINOv2/CLIP ViT) folder or Hub id (${ENV_TEACHER})"
    )
    parser.add_argument("--teacher_image_size", type=int, default=224, help="shorter side the teacher sees")
    parser.add_argument("--host", default=None, help="server name (default: gradio's, 127.0.0.1 locally)")
    parser.add_argument("--port", type=int, default=None, help="server port (default: gradio's, 7860)")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY_LIMIT, help="tokenizer events run at most this many at a time"
    )
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Load the models and serve the demo until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    try:
        models = load_demo_models(
            args.model,
            args.pipeline,
            args.teacher,
            device=args.device,
            dtype=getattr(torch, args.dtype),
            teacher_image_size=args.teacher_image_size,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    for notice in models.notices.values():
        logger.warning(notice)
    demo = build_demo(models=models, concurrency_limit=args.concurrency)
    launch_demo(demo, server_name=args.host, server_port=args.port, share=args.share or None)


def launch_demo(demo: gr.Blocks, attempts: int = 3, **launch_kwargs: Any) -> Any:
    """``demo.launch`` with the demo's upload cap and CSS, retried when gradio cannot reach its own server in time.

    Right after starting, gradio checks its local URL with a 3 s timeout and gives up with "localhost is not
    accessible" when a busy machine answers more slowly; the server is then closed and started again.

    Args:
        demo: the app from :func:`build_demo`.
        attempts: launches to try.
        **launch_kwargs: forwarded to ``gr.Blocks.launch`` (``server_name``, ``server_port``,
            ``prevent_thread_lock``, ...).

    Returns:
        What ``launch`` returns.
    """
    launch_kwargs = {"max_file_size": MAX_UPLOAD_BYTES, "show_error": True, "css": DEMO_CSS, **launch_kwargs}
    for attempt in range(1, attempts + 1):
        try:
            return demo.launch(**launch_kwargs)
        except ValueError as err:
            if "localhost is not accessible" not in str(err) or attempt == attempts:
                raise
            logger.warning(
                "gradio did not reach its own server in time (busy machine?); retrying (%d/%d)", attempt, attempts
            )
            demo.close()
    return None
