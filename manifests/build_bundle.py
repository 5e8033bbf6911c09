"""Build the MCP Bundle: dist/gum-mcp-<version>.mcpb, for Claude Desktop's one-click install.

The bundle is `manifests/manifest.json` (as `manifest.json`) beside the project itself (pyproject.toml,
README.md and the gum_mcp package). Its server type is `uv`: the host runs
`uv run --directory <bundle> gum-mcp serve`, which installs gum-mcp's dependencies on first start.

    npm ci                                       # the official bundle CLI, pinned in package-lock.json
    .venv/bin/python manifests/build_bundle.py   # [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MCPB = REPO / "node_modules" / ".bin" / ("mcpb.cmd" if os.name == "nt" else "mcpb")
PROJECT_FILES = ("pyproject.toml", "README.md")


def stage(dest: Path) -> Path:
    """Lay the bundle's files out in `dest` (created); returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "gum_mcp", dest / "gum_mcp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "manifests" / "manifest.json", dest / "manifest.json")
    return dest


def build(out_dir: Path) -> Path:
    if not MCPB.exists():
        raise SystemExit(f"{MCPB} is missing: run `npm ci` in {REPO}")
    version = json.loads((REPO / "manifests" / "manifest.json").read_text(encoding="utf-8"))["version"]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"gum-mcp-{version}.mcpb"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(MCPB), "pack", str(stage(Path(tmp) / "gum-mcp")), str(target)], check=True,
                       stdout=sys.stderr)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
