"""Real-browser test of the demo: ``python app.py`` with tiny models, driven by Debian's chromium (headless,
through playwright-core from npm, never a downloaded browser build): upload an image on the Reconstruct tab,
click, wait for the output; a renamed text file shows the app's error; a click on the Structure tab's image
shows the attention overlay. Screenshots are saved under test-artifacts/browser/.

Needs: ``apt-get install -y chromium chromium-driver`` and ``npm ci --prefix tests/browser`` (``.ci/run``
does both). Skipped, with the reason, only when no chromium is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import PIL.Image
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BROWSER_DIR = REPO / "tests" / "browser"
ARTIFACTS = REPO / "test-artifacts" / "browser"
SIZE = 32


def find_chromium() -> str | None:
    """Debian's chromium binary (``$CHROMIUM_PATH`` overrides); the real binary is preferred to the wrapper."""
    candidates = [
        os.environ.get("CHROMIUM_PATH"),
        "/usr/lib/chromium/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install -y chromium chromium-driver; .ci/run installs it)",
    ),
]


def ensure_playwright() -> None:
    """playwright-core in tests/browser/node_modules (``npm ci`` once if missing); fail with instructions if not."""
    if shutil.which("node") is None:
        pytest.fail("chromium is installed but node is not: apt-get install -y nodejs npm")
    if (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return
    npm = shutil.which("npm")
    if npm is not None:
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=BROWSER_DIR,
            env=env,
            timeout=300,
            capture_output=True,
            check=False,
        )
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            "playwright-core is missing: run `npm ci --prefix tests/browser` "
            "(PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1; the test uses the system chromium)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], log: Path, timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py ARGS`` on a free 127.0.0.1 port and wait until it answers; returns (process, url)."""
    import httpx

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "app.py"),
                *args,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_threads",
                "1",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    stop(proc)
    raise RuntimeError(f"app.py did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_reconstruct_and_structure_in_chromium(tmp_path: Path) -> None:
    ensure_playwright()
    import skimage.data
    from test_pipeline_muse import make_text_pipeline

    torch.manual_seed(0)
    pipe = make_text_pipeline()
    pipe.save_pretrained(tmp_path / "pipeline")
    pipe.vae.save_pretrained(tmp_path / "tokenizer")
    pipe.image_processor.save_pretrained(tmp_path / "tokenizer")
    image = tmp_path / "astronaut.png"
    PIL.Image.fromarray(skimage.data.astronaut()).resize((200, 160)).save(image)
    bad = tmp_path / "notes.png"
    bad.write_text("plain text, renamed to .png\n")
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)

    proc, url = start_app(
        ["--model", str(tmp_path / "tokenizer"), "--pipeline", str(tmp_path / "pipeline")], ARTIFACTS / "server.log"
    )
    try:
        run = subprocess.run(
            [
                "node",
                str(BROWSER_DIR / "reconstruct.mjs"),
                "--url",
                url,
                "--image",
                str(image),
                "--bad",
                str(bad),
                "--out",
                str(ARTIFACTS),
                "--chromium",
                CHROMIUM,
            ],
            cwd=BROWSER_DIR,
            capture_output=True,
            text=True,
            timeout=420,
        )
    finally:
        stop(proc)
    (ARTIFACTS / "browser.log").write_text(run.stdout + "\n" + run.stderr)
    assert run.returncode == 0, f"browser run failed:\n{run.stderr[-3000:]}"
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    # the reconstruction is shown at the tokenizer's size, with its metrics
    assert (summary["reconstruction"]["width"], summary["reconstruction"]["height"]) == (SIZE, SIZE)
    assert "psnr_db" in summary["metrics_text"] and "latent_shape" in summary["metrics_text"]
    # a renamed text file gets the app's message
    assert "is not an image that can be decoded" in summary["bad_upload_error"]
    # the click at 75% across / 30% down the 200x160 picture: x 150 px -> (150 - 20) / 160 of the centre crop
    # -> column 3 of 4; y 0.3 -> row 1
    assert summary["clicked"]["x"] == pytest.approx(0.75, abs=0.02)
    assert summary["clicked"]["y"] == pytest.approx(0.3, abs=0.02)
    assert summary["student"]["width"] == summary["student"]["height"] == 256
    assert "token (1, 3) of the 4x4 grid" in summary["structure_note"]
    for name in ("reconstruct.png", "bad_upload.png", "structure.png"):
        with PIL.Image.open(ARTIFACTS / name) as shot:
            assert shot.size[0] >= 1000 and shot.size[1] >= 700
