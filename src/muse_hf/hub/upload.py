"""Hub publishing: fail-fast uploads of a saved MUSE tokenizer / pipeline with its card, and of the demo Space.

:func:`push_to_hub` uploads a folder (or a model / pipeline object, saved to a temporary folder first) with its card
in one commit. It checks that the Hub is reachable *before* touching anything (:func:`check_hub_access`), so offline
it fails at once with :class:`HubUnavailableError` and the local folder is left exactly as it was.
:func:`push_space` publishes the Gradio demo (``app.py``) as a Space pointed at pushed models.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from diffusers import DiffusionPipeline
from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token, whoami
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import PreTrainedModel

from muse_hf.hub.cards import REPO_ROOT, CardKind, detect_kind, render_model_card
from muse_hf.validation import hub_offline, is_hub_id

__all__ = [
    "DEFAULT_IGNORE_PATTERNS",
    "HubUnavailableError",
    "check_hub_access",
    "push_space",
    "push_to_hub",
]

#: Files never uploaded by :func:`push_to_hub` (training state, logs, temp files of atomic writes).
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = (
    "checkpoint-*",
    "checkpoint-*/*",
    "*/checkpoint-*/*",
    "logs/*",
    ".tmp-*",
    ".old-*",
    "*.lock",
    ".git/*",
    "__pycache__/*",
    "*.pyc",
)


class HubUnavailableError(RuntimeError):
    """The Hugging Face Hub cannot be written to (offline mode, no token, no network, rejected token)."""


def check_hub_access(token: str | None = None, timeout: float = 5.0) -> str:
    """Fail fast unless the Hub can be written to: offline mode, token, a TCP connection, ``whoami``.

    Args:
        token: a token to use (default: the stored one / ``HF_TOKEN``).
        timeout: seconds for the connection test.

    Returns:
        The user name the token belongs to.

    Raises:
        HubUnavailableError: naming what is missing and what to do.
    """
    if hub_offline():
        raise HubUnavailableError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it on a machine with network access."
        )
    token = token or get_token()
    if not token:
        raise HubUnavailableError("No Hugging Face token found; run `hf auth login` or set HF_TOKEN.")
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise HubUnavailableError(
            f"The Hub endpoint {host}:{port} cannot be reached ({err}); check the network."
        ) from err
    try:
        info = whoami(token=token)
    except Exception as err:  # noqa: BLE001 - any failure here means we cannot push
        raise HubUnavailableError(f"The Hub did not accept the token ({type(err).__name__}: {err}).") from err
    return str(info.get("name", ""))


def _kind_of_object(obj: Any) -> CardKind:
    if isinstance(obj, DiffusionPipeline):
        return "pipeline"
    if isinstance(obj, PreTrainedModel) and getattr(obj.config, "model_type", None) == "muse_tokenizer":
        return "tokenizer"
    raise ValueError(
        f"push_to_hub takes a saved folder, a MuseTokenizerModel or a MusePipeline; got {type(obj).__name__}."
    )


def _files_to_upload(folder: Path, ignore_patterns: Sequence[str]) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if any(fnmatch.fnmatch(rel, pat) for pat in ignore_patterns):
            continue
        files.append((rel, path))
    return files


def push_to_hub(
    folder_or_model: str | os.PathLike[str] | Any,
    repo_id: str,
    *,
    kind: CardKind | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    metrics: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    card_kwargs: Mapping[str, Any] | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
    timeout: float = 5.0,
) -> str:
    """Upload a MUSE tokenizer or pipeline, with its model card, to the Hub in one commit.

    The Hub is checked (:func:`check_hub_access`) before anything is written, and the local folder is only
    read: the card is uploaded from memory (a ``README.md`` already in the folder is uploaded as it is).

    Args:
        folder_or_model: a ``save_pretrained`` folder, or a ``MuseTokenizerModel`` / ``MusePipeline`` (saved to a
            temporary folder first).
        repo_id: ``"user/name"`` of the model repository (created if missing).
        kind: ``"tokenizer"`` / ``"pipeline"``; detected when ``None``.
        private: visibility of a newly created repository.
        token: Hub token (default: the stored one).
        revision: branch to push to.
        commit_message: default ``"Upload MUSE <kind>"``.
        create_pr: open a pull request instead of committing to the branch.
        metrics: evaluation results for the card (see :func:`load_metrics`).
        settings: training settings for the card.
        card_kwargs: extra arguments for :func:`render_model_card` (``base_model``, ``datasets``, ...).
        ignore_patterns: glob patterns (relative paths) not uploaded.
        timeout: seconds for the connectivity check.

    Returns:
        The URL of the commit (or pull request).

    Raises:
        ValueError: not a MUSE folder/model, or a malformed ``repo_id``.
        HubUnavailableError: offline, no token, unreachable Hub or rejected token; nothing was written.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub id ('user/name'): {err}") from err
    if isinstance(folder_or_model, (str, os.PathLike)):
        folder: Path | None = Path(folder_or_model)
        detected = detect_kind(folder)
        if kind is not None and kind != detected:
            raise ValueError(f"{folder} holds a MUSE {detected}, but kind={kind!r} was requested.")
        kind = detected
        where = f"the local folder {folder} is unchanged"
    else:
        folder = None
        kind = _kind_of_object(folder_or_model)
        where = "nothing was saved or uploaded"
    try:
        check_hub_access(token=token, timeout=timeout)
    except HubUnavailableError as err:
        raise HubUnavailableError(
            f"Cannot push to {repo_id}: {err} Nothing was uploaded and {where}; push later with "
            "`python -m muse_hf.hub push FOLDER REPO_ID` (or `hf upload REPO_ID FOLDER`)."
        ) from err

    with tempfile.TemporaryDirectory(prefix="muse-push-") as tmp:
        if folder is None:
            folder = Path(tmp) / "model"
            folder_or_model.save_pretrained(str(folder))
        files = _files_to_upload(folder, ignore_patterns)
        operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in files]
        if not any(rel == "README.md" for rel, _ in files):
            card = render_model_card(
                kind, folder, metrics=metrics, settings=settings, repo_id=repo_id, **dict(card_kwargs or {})
            )
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload MUSE {kind}",
            revision=revision,
            create_pr=create_pr,
        )
    return str(info.pr_url or info.commit_url)


def push_space(
    repo_id: str,
    *,
    model: str | None = None,
    pipeline: str | None = None,
    teacher: str | None = None,
    hardware: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    repo_root: str | os.PathLike[str] | None = None,
    timeout: float = 5.0,
) -> str:
    """Publish the Gradio demo as a Space: ``app.py``, ``src/`` and ``spaces/{README.md,requirements.txt}``
    (placed at the Space root), with Space variables pointing the app at Hub models.

    Args:
        repo_id: ``"user/space-name"``.
        model: Hub id of the tokenizer (Space variable ``MUSE_DEMO_MODEL``).
        pipeline: Hub id of the pipeline (``MUSE_DEMO_PIPELINE``).
        teacher: Hub id of a structural teacher (``MUSE_DEMO_TEACHER``), optional.
        hardware: Space hardware, e.g. ``"cpu-basic"`` or ``"t4-small"`` (default: the Hub's default).
        private: visibility of a newly created Space.
        token: Hub token.
        repo_root: the muse_hf checkout holding ``app.py`` (default: this package's repository root).
        timeout: seconds for the connectivity check.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: missing ``app.py``/``spaces/`` files or ids that are not Hub ids.
        HubUnavailableError: the Hub cannot be written to; nothing was uploaded.
    """
    root = Path(repo_root) if repo_root is not None else REPO_ROOT
    needed = [root / "app.py", root / "spaces" / "README.md", root / "spaces" / "requirements.txt", root / "src"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ValueError(f"Cannot assemble the Space: missing {missing}; run from a muse_hf checkout.")
    variables = {
        k: v
        for k, v in (("MUSE_DEMO_MODEL", model), ("MUSE_DEMO_PIPELINE", pipeline), ("MUSE_DEMO_TEACHER", teacher))
        if v
    }
    bad = [v for v in variables.values() if not (is_hub_id(v) and not Path(v).exists())]
    if bad:
        raise ValueError(f"Space variables must be Hub ids ('user/name'); got {bad}. Push the folders first.")
    try:
        check_hub_access(token=token, timeout=timeout)
    except HubUnavailableError as err:
        raise HubUnavailableError(f"Cannot create the Space {repo_id}: {err} Nothing was uploaded.") from err
    operations = [
        CommitOperationAdd(path_in_repo="app.py", path_or_fileobj=str(root / "app.py")),
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(root / "spaces" / "README.md")),
        CommitOperationAdd(path_in_repo="requirements.txt", path_or_fileobj=str(root / "spaces" / "requirements.txt")),
    ]
    for rel, path in _files_to_upload(root / "src", DEFAULT_IGNORE_PATTERNS):
        operations.append(CommitOperationAdd(path_in_repo=f"src/{rel}", path_or_fileobj=str(path)))
    for rel, path in _files_to_upload(root / "model_cards", DEFAULT_IGNORE_PATTERNS):
        operations.append(CommitOperationAdd(path_in_repo=f"model_cards/{rel}", path_or_fileobj=str(path)))
    api = HfApi(token=token)
    api.create_repo(
        repo_id,
        repo_type="space",
        space_sdk="gradio",
        private=private,
        exist_ok=True,
        space_hardware=hardware,
        space_variables=[{"key": k, "value": v} for k, v in variables.items()] or None,
    )
    info = api.create_commit(repo_id, operations, repo_type="space", commit_message="Upload the MUSE demo")
    return str(info.commit_url)
