"""The demo's computations, independent of the UI (:class:`MuseDemo`: one method per tab's action).

Reconstruct (PSNR / SSIM, latent channels), Structure (the student's topology attention beside a teacher's),
Generate, multi-turn Edit and Understand (chat, InternVL pipelines only). Inputs are checked with
:mod:`muse_hf.demo.inputs`; outputs are drawn with :mod:`muse_hf.demo.views`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch

from muse_hf.data.captions import make_caption
from muse_hf.data.scenes import render_scene, sample_scene
from muse_hf.demo.inputs import (
    MAX_GUIDANCE,
    MAX_NEW_TOKENS,
    MAX_SEED,
    MAX_STEPS,
    Refused,
    check_number,
    check_text,
    image_key,
    require_image,
)
from muse_hf.demo.models import DemoModels
from muse_hf.demo.views import attention_overlay, chat_messages, edit_messages, fit_to_size, latent_channel_view
from muse_hf.evaluation.metrics import psnr, ssim
from muse_hf.objectives import MaskAffinityTeacher, topology_alignment_loss

__all__ = ["MuseDemo", "ProgressFn", "scene_renderer"]

ProgressFn = Callable[..., Any]


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


class MuseDemo:
    """The demo's computations, independent of the UI (each method is one tab's action).

    Args:
        models: what to run on (see :func:`load_demo_models`).
    """

    def __init__(self, models: DemoModels) -> None:
        self.models = models
        self.scene_render = scene_renderer()

    # -------------------------------------------------------------- shared
    def _need(self, part: str) -> Any:
        value = getattr(self.models, part)
        if value is None:
            raise Refused(self.models.notices.get(part, f"No {part} is loaded."))
        return value

    def prepare(
        self, image: PIL.Image.Image
    ) -> tuple[torch.Tensor, PIL.Image.Image, tuple[float, float, float, float]]:
        """Fit an image to the tokenizer's size; returns ``pixel_values`` ``(1, 3, H, W)``, the view and crop box."""
        tokenizer = self._need("tokenizer")
        view, box = fit_to_size(image, self.models.native_size)
        h, w = self.models.native_size
        pixel_values = self.models.image_processor(view, size={"height": h, "width": w}, return_tensors="pt")[
            "pixel_values"
        ].to(device=tokenizer.device, dtype=tokenizer.dtype)  # (1, 3, H, W)
        return pixel_values, view, box

    # -------------------------------------------------------------- Reconstruct
    @torch.no_grad()
    def reconstruct(
        self, image: PIL.Image.Image | None, progress: ProgressFn = _no_progress
    ) -> tuple[PIL.Image.Image, PIL.Image.Image, PIL.Image.Image, dict[str, Any]]:
        """Encode and decode an image.

        Returns:
            The model input (fitted to the tokenizer's size), its reconstruction (same size), the latent-channel
            view, and metrics: ``psnr_db``, ``ssim``, ``latent_shape`` ``[c, h, w]``, ``image_size`` ``[H, W]``,
            ``compression``, ``seconds``.
        """
        image = require_image(image)
        tokenizer = self._need("tokenizer")
        progress(0.1, desc="Encoding")
        start = time.perf_counter()
        pixel_values, view, _ = self.prepare(image)
        latents = tokenizer.encode(pixel_values).latents  # (1, c, h, w)
        progress(0.5, desc="Decoding")
        sample = tokenizer.decode(latents, output_size=tuple(pixel_values.shape[-2:])).sample  # (1, 3, H, W)
        seconds = time.perf_counter() - start
        processor = self.models.image_processor
        target = processor.to_unit_range(pixel_values.float().cpu())  # (1, 3, H, W) in [0, 1]
        recon = processor.postprocess(sample.float().cpu(), output_type="pt")  # (1, 3, H, W) in [0, 1]
        metrics = {
            "psnr_db": round(float(psnr(recon, target)[0]), 3),
            "ssim": round(float(ssim(recon, target)[0]), 4),
            "latent_shape": list(latents.shape[1:]),
            "image_size": list(pixel_values.shape[-2:]),
            "compression": int(tokenizer.config.spatial_compression_ratio),
            "seconds": round(seconds, 3),
        }
        progress(0.9, desc="Rendering")
        recon_image = processor.postprocess(sample.float().cpu(), output_type="pil")[0]
        return view, recon_image, latent_channel_view(latents[0]), metrics

    # -------------------------------------------------------------- Structure
    @property
    def topology_layers(self) -> list[int]:
        """Block indices whose attention the tokenizer can return."""
        tokenizer = self.models.tokenizer
        return list(tokenizer.config.topology_layers) if tokenizer is not None else []

    def sample_scene(self, seed: int) -> tuple[PIL.Image.Image, dict[str, Any]]:
        """A synthetic scene at the tokenizer's size with its instance mask (for the mask-affinity teacher).

        Returns:
            The image and a state ``{"key": content hash, "mask": (H, W) uint8, "caption": str}``.
        """
        if self.scene_render is None:
            raise Refused("The synthetic scene renderer (muse_hf.data.scenes) is not available in this install.")
        seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
        image, mask, caption = self.scene_render(seed, max(32, min(self.models.native_size)))
        return image, {"key": image_key(image), "mask": mask, "caption": caption}

    @torch.no_grad()
    def structure(
        self,
        image: PIL.Image.Image | None,
        query: str,
        x: float,
        y: float,
        layer: int | None,
        scene: dict[str, Any] | None = None,
        progress: ProgressFn = _no_progress,
    ) -> tuple[PIL.Image.Image, PIL.Image.Image | None, str]:
        """The student's topology attention beside the teacher's for one query (paper Fig. 4).

        Args:
            image: the image.
            query: ``"point"`` (the token under ``(x, y)``) or ``"pooled"`` (mean over all query tokens: the
                attention each token receives, a CLS-like summary).
            x: horizontal position of the point as a fraction of the image width, in [0, 1].
            y: vertical position as a fraction of the height, in [0, 1].
            layer: the synergistic block (one of the tokenizer's ``topology_layers``; default the last).
            scene: the state of :meth:`sample_scene`; its mask is used when ``image`` is that scene.

        Returns:
            Student overlay, teacher overlay (``None`` without a teacher) and a Markdown note on what is shown.
        """
        image = require_image(image)
        tokenizer = self._need("tokenizer")
        if query not in ("point", "pooled"):
            raise Refused(f"Query must be 'point' or 'pooled'; got {query!r}.")
        x = check_number(x, "x", 0.0, 1.0)
        y = check_number(y, "y", 0.0, 1.0)
        layers = self.topology_layers
        if not layers:
            raise Refused("This tokenizer has no topology layers (config.topology_layers is empty).")
        layer = layers[-1] if layer is None else int(check_number(layer, "Layer", min(layers), max(layers), True))
        if layer not in layers:
            raise Refused(f"Layer {layer} has no topology attention; choose one of {layers}.")
        progress(0.1, desc="Student attention")
        pixel_values, view, box = self.prepare(image)
        enc = tokenizer.encode(pixel_values, output_attentions=True)
        grid = tuple(enc.latents.shape[-2:])  # (h, w)
        student = enc.attentions[layers.index(layer)].float().mean(dim=1, keepdim=True)  # (1, 1, N, N)

        row = col = None
        if query == "point":  # the clicked pixel of the original image -> its cell of the fitted crop
            left, top, cw, ch = box
            fx = min(max((x * image.size[0] - left) / cw, 0.0), 1.0 - 1e-6)
            fy = min(max((y * image.size[1] - top) / ch, 0.0), 1.0 - 1e-6)
            row, col = int(fy * grid[0]), int(fx * grid[1])

        def select(attn: torch.Tensor) -> torch.Tensor:  # (1, 1, N, N) -> (h, w)
            rows = attn[0, 0]  # (N, N)
            picked = rows[row * grid[1] + col] if row is not None else rows.mean(dim=0)  # (N,)
            return picked.reshape(grid)

        point = (row, col) if row is not None else None
        student_img = attention_overlay(view, select(student), point)
        what = (
            f"token ({row}, {col}) of the {grid[0]}x{grid[1]} grid"
            if point
            else "the pooled query (mean over all tokens)"
        )
        note = [f"**Student**: block {layer} of the synergistic stack, heads averaged, {what}."]

        progress(0.5, desc="Teacher attention")
        teacher = None
        if scene and scene.get("key") == image_key(image) and scene.get("mask") is not None:
            left, top, cw, ch = box  # the same crop as the image, nearest so instance ids stay ids
            mask_img = PIL.Image.fromarray(np.asarray(scene["mask"], np.uint8)).resize(
                (view.size[0], view.size[1]), PIL.Image.Resampling.NEAREST, box=(left, top, left + cw, top + ch)
            )
            mask = torch.from_numpy(np.array(mask_img, dtype=np.int64))  # (H, W)
            teacher = MaskAffinityTeacher()(mask[None], grid)  # (1, 1, N, N)
            note.append(
                "**Teacher**: mask affinity from the synthetic scene's instance masks (the training teacher "
                "for the embedded data): each token attends uniformly to its own object."
            )
        elif self.models.teacher is not None:
            images01 = self.models.image_processor.to_unit_range(pixel_values.float())
            teacher = self.models.teacher(images01.to(self.models.device), grid_size=grid)  # (1, heads|1, N, N)
            teacher = teacher.float().mean(dim=1, keepdim=True)
            note.append(
                f"**Teacher**: `{self.models.sources.get('teacher')}` attention (last layer, heads averaged, "
                "interpolated to the student's grid)."
            )
        else:
            note.append(
                "**No teacher shown**: the mask-affinity teacher needs instance masks, which an uploaded photo does "
                "not have (use *Sample a synthetic scene*), and no structural teacher was configured (start the "
                "demo with `--teacher facebook/dinov2-small` or another DINO checkpoint)."
            )
        teacher_img = None
        if teacher is not None:
            teacher = teacher.to(student.device)
            teacher_img = attention_overlay(view, select(teacher), point)
            kl = float(topology_alignment_loss(student, teacher))
            note.append(f"Topology KL(teacher ‖ student), mean over all query tokens: **{kl:.4f}** nats.")
        return student_img, teacher_img, "\n\n".join(note)

    # -------------------------------------------------------------- Generate / Edit / Understand
    def _pipeline_call(
        self, prompt: str, image: PIL.Image.Image | None, steps: Any, guidance: Any, seed: Any, progress: ProgressFn
    ) -> PIL.Image.Image:
        pipe = self._need("pipeline")
        steps = check_number(steps, "Steps", 1, MAX_STEPS, integer=True)
        guidance = check_number(guidance, "Guidance", 0.0, MAX_GUIDANCE)
        seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        progress((0, steps), desc="Denoising", unit="steps")

        def on_step(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            progress((step + 1, steps), desc="Denoising", unit="steps")
            return {}

        try:
            out = pipe(
                prompt,
                image=image,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator,
                callback_on_step_end=on_step,
                output_type="pil",
            )
        except ValueError as err:  # the pipeline's own input checks
            raise Refused(str(err)) from err
        return out.images[0]

    def generate(
        self, prompt: str, steps: Any, guidance: Any, seed: Any, progress: ProgressFn = _no_progress
    ) -> PIL.Image.Image:
        """Text-to-image at the tokenizer's native size."""
        prompt = check_text(prompt, "prompt")
        return self._pipeline_call(prompt, None, steps, guidance, seed, progress)

    def edit(
        self,
        image: PIL.Image.Image | None,
        instruction: str,
        steps: Any,
        guidance: Any,
        seed: Any,
        session: dict[str, Any] | None,
        progress: ProgressFn = _no_progress,
    ) -> tuple[PIL.Image.Image, list[dict[str, Any]], dict[str, Any]]:
        """One turn of multi-turn editing: edit the latest image of the session (a new upload starts over).

        Returns:
            The edited image, the conversation as chatbot messages and the new session state
            ``{"key": source hash, "source": image, "turns": [(instruction, image), ...]}``.
        """
        image = require_image(image, "an image to edit")
        instruction = check_text(instruction, "edit instruction")
        key = image_key(image)
        if not session or session.get("key") != key:
            session = {"key": key, "source": image, "turns": []}
        current = session["turns"][-1][1] if session["turns"] else session["source"]
        edited = self._pipeline_call(instruction, current, steps, guidance, seed, progress)
        session = {**session, "turns": [*session["turns"], (instruction, edited)]}
        return edited, edit_messages(session), session

    def understand(
        self,
        image: PIL.Image.Image | None,
        question: str,
        max_new_tokens: Any,
        session: dict[str, Any] | None,
        progress: ProgressFn = _no_progress,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Answer a question about the image with the pipeline's MLLM (each question is answered on its own).

        Returns:
            The conversation as chatbot messages and the session state.
        """
        pipe = self._need("pipeline")
        if not self.models.can_chat:
            raise Refused(f"This pipeline's mllm ({type(pipe.mllm).__name__}) cannot see images, so it cannot chat.")
        image = require_image(image, "an image to ask about")
        question = check_text(question, "question")
        max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
        key = image_key(image)
        if not session or session.get("key") != key:
            session = {"key": key, "source": image, "turns": []}
        progress(0.2, desc="Generating the answer")
        try:
            answer = pipe.chat(image, question, max_new_tokens=max_new_tokens)
        except ValueError as err:
            raise Refused(str(err)) from err
        session = {**session, "turns": [*session["turns"], (question, answer or "(empty answer)")]}
        return chat_messages(session), session


def scene_renderer() -> Callable[[int, int], tuple[PIL.Image.Image, np.ndarray, str]] | None:
    """``render(seed, size) -> (image, mask, caption)``: a synthetic scene with its instance masks and a caption."""

    def render(seed: int, size: int) -> tuple[PIL.Image.Image, np.ndarray, str]:
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, size=size)
        image, mask = render_scene(scene)  # (S, S, 3) uint8, (S, S) uint8
        return PIL.Image.fromarray(image), mask, make_caption(scene, rng)

    return render
