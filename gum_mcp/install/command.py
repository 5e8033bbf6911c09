"""`run_install`: the entry point `gum-mcp install <client>` calls, and the report it prints."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gum_mcp.install.backup import read_config, replace_with_backup
from gum_mcp.install.clients import SERVER_NAME, Client, config_path, get_client
from gum_mcp.install.diff import masked_diff
from gum_mcp.install.edit import Action, plan_edit
from gum_mcp.install.errors import InstallError
from gum_mcp.install.templates import default_launcher, render_template, server_entry


@dataclass
class InstallResult:
    client: str
    scope: str
    path: Path
    action: Action
    dry_run: bool
    backup: Path | None
    entry: dict[str, Any]
    diff: str
    report: str  # what happened, for a person
    snippet: str = ""  # the client's whole template, filled in: what to paste by hand

    @property
    def changed(self) -> bool:
        return self.action != "unchanged" and not self.dry_run

    def as_dict(self) -> dict[str, Any]:
        """For --json: a dry run says what it would do ("would_create", ...), never what it did."""
        action = f"would_{WOULD[self.action]}" if self.dry_run and self.action != "unchanged" else self.action
        return {"client": self.client, "scope": self.scope, "path": str(self.path), "action": action,
                "dry_run": self.dry_run, "changed": self.changed,
                "backup": None if self.backup is None else str(self.backup), "entry": self.entry,
                "diff": self.diff, "snippet": self.snippet}


#: The verb of each action, for what a dry run would do.
WOULD = {"created": "create", "added": "add", "updated": "update", "unchanged": "change_nothing"}


def run_install(client: str, *, scope: str | None, dry_run: bool, home: Path | None = None,
                platform: str | None = None, launcher: list[str] | None = None, data_dir: Path | None = None,
                project_dir: Path | None = None, now: datetime | None = None) -> InstallResult:
    """Merge the gum server into `client`'s config for `scope` (default: the client's first scope).

    `home` and `platform` choose the machine layout (default: this one; tests pass a temporary home);
    `launcher` is the command clients run (default: `default_launcher()`); `data_dir` is pinned as
    GUM_DATA_DIR (default: the configured one); `project_dir` is the project for scope=project
    (default: the current directory). Raises InstallError, after writing nothing, when it cannot.
    """
    spec = get_client(client)
    scope = scope or spec.default_scope
    path = config_path(client, scope, home=home, platform=platform, project_dir=project_dir)
    if data_dir is None:
        from gum_mcp.config import load_settings

        data_dir = load_settings().data_dir
    launcher = list(launcher) if launcher else default_launcher()
    document = render_template(client, launcher=launcher, data_dir=Path(data_dir))
    entry = server_entry(client, document)
    snippet = json.dumps(document, indent=2, ensure_ascii=False)

    target = Path(os.path.realpath(path)) if path.is_symlink() else path  # write through a dotfiles symlink
    raw = read_config(target)
    old_text = None if raw is None else _decode(raw, target, snippet)
    plan = plan_edit(old_text, spec, entry, path=target, snippet=snippet)
    diff = "" if plan.action == "unchanged" else masked_diff(plan.old_text, plan.new_text, target)

    backup = None
    if plan.action != "unchanged" and not dry_run:
        backup = replace_with_backup(target, raw, plan.new_text.encode("utf-8"), now=now, writer=spec.title)

    report = _report(spec, scope, path, target, plan.action, dry_run, backup, launcher, Path(data_dir), diff,
                     snippet)
    return InstallResult(client, scope, target, plan.action, dry_run, backup, entry, diff, report, snippet)


def _decode(raw: bytes, path: Path, snippet: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InstallError(f"{path} is not UTF-8 text; gum-mcp will not rewrite it.", snippet=snippet) from None


def _report(spec: Client, scope: str, path: Path, target: Path, action: Action, dry_run: bool,
            backup: Path | None, launcher: list[str], data_dir: Path, diff: str, snippet: str) -> str:
    where = f"{spec.container}.{SERVER_NAME}"
    would = "would " if dry_run else ""
    what = {
        "created": f"{would}create the file with {where}",
        "added": f"{would}add {where}",
        "updated": f"{would}update {where}",
        "unchanged": f"nothing to do: {where} is already up to date",
    }[action]
    lines = [f"{spec.title} ({scope} scope)", f"  config   {target}"]
    if target != path:
        lines.append(f"           (through the symlink {path})")
    if backup is not None:
        lines.append(f"  backup   {backup}")
    elif dry_run and action in ("added", "updated"):
        lines.append("  backup   would be written first")
    lines.append(f"  change   {what}")
    lines.append(f"  runs     {' '.join(_quote(a) for a in launcher)}  (GUM_DATA_DIR={data_dir})")
    if diff:
        lines.append("")
        lines.extend("  " + line for line in diff.rstrip("\n").split("\n"))
        lines.append("")
    if dry_run and action != "unchanged":  # the clean entry too, to paste by hand
        lines.extend([f"  or add {where} by hand (the client's whole snippet):", snippet, ""])
    if dry_run:
        lines.append("  dry run: nothing was written")
    elif action != "unchanged":
        lines.append(f"  next     {spec.restart}")
    return "\n".join(lines)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (not arg or any(ch.isspace() for ch in arg)) else arg
