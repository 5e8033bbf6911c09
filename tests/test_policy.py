"""The disclosure policy file (gum_mcp/store/policy.py), `gum-mcp policy`, and the classes in the store:
lineage (the most sensitive class wins) and the upgrade (existing propositions start untagged)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from gum_mcp.cli import main
from gum_mcp.domain import SENSITIVITY_ORDER, BatchResult, NewProposition, PropositionDraft, most_sensitive
from gum_mcp.store import Store
from gum_mcp.store.db import _statements
from gum_mcp.store.policy import (
    ALL_CLASSES,
    DEFAULT_ALLOWED,
    Policy,
    PolicyError,
    PolicyFile,
    edit,
    parse_policy,
    read_policy,
    render_policy,
    write_policy,
)
from gum_mcp.store.schema import MIGRATIONS
from tests.conftest import make_settings


# ------------------------------------------------------------------------------------------ the file
def test_without_a_file_the_sensitive_classes_are_withheld_from_everyone(tmp_path: Path) -> None:
    policy = read_policy(tmp_path / "policy.toml")
    assert policy.problem is None and policy.restricts_anyone
    for client in ("claude-code", "default", "anything"):
        assert policy.allowed(client) == DEFAULT_ALLOWED
    assert not {"health", "finance", "relationships", "beliefs-and-identity"} & DEFAULT_ALLOWED
    assert {"work", "personal", "location", "other"} == DEFAULT_ALLOWED


def test_the_file_names_clients_and_a_default() -> None:
    policy = parse_policy("""
        [default]
        allow = ["work", "other"]

        [clients.claude-code]
        allow = ["WORK"]

        [clients."Claude Desktop"]
        allow = ["all"]

        [clients]
        script = []
    """)
    assert policy.allowed("unknown") == {"work", "other"}
    assert policy.allowed("claude-code") == {"work"}
    assert policy.allowed("claude desktop") == ALL_CLASSES  # names match ignoring case when not exactly
    assert policy.allowed("script") == frozenset()
    assert not Policy(default=ALL_CLASSES).restricts_anyone


@pytest.mark.parametrize("text", [
    "[default]\nallow = ['work', 'helth']\n",  # a typo never widens (nor silently narrows) anything
    "[clients.x]\nallow = 'work'\n",
    "[clients.x]\nallows = ['work']\n",
    "[defaults]\nallow = ['work']\n",
    "[default\nallow = ['work']\n",
])
def test_an_invalid_file_allows_nothing_to_anyone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy = read_policy(path)
    assert policy.problem and str(path) in policy.problem
    assert policy.allowed("x") == frozenset() and policy.allowed("anyone") == frozenset()
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_writing_is_atomic_private_and_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "data" / "policy.toml"
    odd = 'my "agent"\\ \t\x7f é 🙂'
    policy = Policy(default=frozenset({"work"}), clients={"claude-code": ALL_CLASSES, odd: frozenset(),
                                                          "cursor": frozenset({"health", "work"})})
    write_policy(path, policy)
    assert read_policy(path) == policy
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["policy.toml"]  # no temporary file left behind
    text = path.read_text()
    assert text == render_policy(policy) and "# The classes, most sensitive first" in text
    assert all(name in text for name in SENSITIVITY_ORDER)


def test_a_policy_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    watched = PolicyFile(path)
    assert watched.current().allowed("coder") == DEFAULT_ALLOWED
    write_policy(path, Policy().with_client("coder", ["work"]))
    assert watched.current().allowed("coder") == {"work"}
    write_policy(path, Policy().with_client("coder", ["work", "health"]))
    assert watched.current().allowed("coder") == {"work", "health"}
    path.unlink()
    assert watched.current().allowed("coder") == DEFAULT_ALLOWED


def test_edits_allow_deny_set_and_reset() -> None:
    policy = edit(Policy(), "allow", "coder", ["health"])
    assert policy.allowed("coder") == DEFAULT_ALLOWED | {"health"}
    policy = edit(policy, "deny", "coder", ["location", "personal"])
    assert policy.allowed("coder") == {"health", "work", "other"}
    policy = edit(policy, "set", "Coder", ["none"])  # the existing entry, ignoring case
    assert policy.allowed("coder") == frozenset() and list(policy.clients) == ["Coder"]
    policy = edit(policy, "reset", "coder", [])
    assert policy.clients == {} and policy.allowed("coder") == DEFAULT_ALLOWED
    policy = edit(policy, "set", None, ["all"])
    assert policy.default == ALL_CLASSES and not policy.restricts_anyone
    with pytest.raises(PolicyError, match="unknown class 'helth'"):
        edit(policy, "allow", "coder", ["helth"])
    with pytest.raises(PolicyError, match="name at least one class"):
        edit(policy, "deny", "coder", [])


def test_the_policy_command(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("GUM_POLICY_FILE", raising=False)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "policy"]) == 0
    assert "not written yet" in capsys.readouterr().out
    assert main([*data, "policy", "set", "claude-code", "work", "other"]) == 0
    assert main([*data, "policy", "deny", "--default", "location"]) == 0
    assert main([*data, "policy", "allow", "--json", "cursor", "health"]) == 0
    capsys.readouterr()
    policy = read_policy(tmp_path / "data" / "policy.toml")
    assert policy.allowed("claude-code") == {"work", "other"}
    assert policy.default == DEFAULT_ALLOWED - {"location"}
    assert policy.allowed("cursor") == (DEFAULT_ALLOWED - {"location"}) | {"health"}
    assert main([*data, "policy", "allow", "cursor", "helth"]) == 2
    assert "unknown class 'helth'" in capsys.readouterr().err
    assert main([*data, "policy", "allow", "health"]) == 2  # "health" taken as the client: no class named
    (tmp_path / "data" / "policy.toml").write_text("[default]\nallow = ['nope']\n")
    assert main([*data, "policy"]) == 1  # shows the problem
    assert "PROBLEM" in capsys.readouterr().out
    assert main([*data, "policy", "allow", "cursor", "work"]) == 2  # never overwrites a file it cannot read


# ------------------------------------------------------------------------------------------ the store
def _new(store: Store, text: str, sensitivity: str | None, supersedes: tuple[int, ...] = ()) -> int:
    [pid] = store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(
        draft=PropositionDraft(text=text, confidence=6, decay=6), supersedes=supersedes,
        cause="merged" if len(supersedes) > 1 else "revised" if supersedes else "proposed",
        sensitivity=sensitivity),)))
    return pid


def test_the_most_sensitive_class_wins_and_lineage_carries_it(store: Store) -> None:
    assert most_sensitive(["other", "work", "location", "finance"]) == "finance"
    assert most_sensitive([None, "personal"]) == "personal" and most_sensitive([None]) is None
    work = _new(store, "Priya leads the loader rewrite", "work")
    health = _new(store, "Priya sees a physiotherapist weekly", "health")
    merged = _new(store, "Priya leaves the loader standup early for physiotherapy", "work", (work, health))
    assert store.get_proposition(merged).sensitivity == "health"
    revised = _new(store, "Priya leaves early on Tuesdays for physiotherapy", None, (merged,))  # no class given
    assert store.get_proposition(revised).sensitivity == "health"
    untagged = _new(store, "Priya keeps a reading list", None)
    child = _new(store, "Priya reads about the loader rewrite", "work", (untagged,))
    assert store.get_proposition(child).sensitivity is None  # an untagged parent: the tagging job decides
    confirmed = store.give_feedback(revised, "confirm")
    assert confirmed is not None and confirmed.sensitivity == "health"
    corrected = store.give_feedback(confirmed.id, "correct", correction="Priya leaves early on Thursdays")
    assert corrected is not None and corrected.sensitivity == "health"


def test_tags_fill_only_what_is_untagged(store: Store) -> None:
    work = _new(store, "Priya leads the loader rewrite", "work")
    untagged = _new(store, "Priya keeps a reading list", None)
    assert store.untagged_count() == 1 and [u.id for u in store.untagged_propositions(limit=10)] == [untagged]
    assert store.tag_propositions({work: "health", untagged: "personal"}) == 1
    assert store.proposition_classes([work, untagged]) == {work: "work", untagged: "personal"}
    with pytest.raises(ValueError, match="not a sensitivity class"):
        store.tag_propositions({untagged: "secret"})
    page = store.current_propositions(sensitivity=["personal"])
    assert [p.id for p in page.items] == [untagged]
    assert store.current_outside(["work"]) == 1 and store.current_outside([]) == 2


def test_existing_propositions_are_untagged_after_the_upgrade(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.data_dir.mkdir(mode=0o700)
    conn = sqlite3.connect(settings.db_path)
    for script in MIGRATIONS[:7]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 7")
    conn.execute("INSERT INTO propositions (text, reasoning, confidence, decay, created_at, last_supported_at)"
                 " VALUES ('Priya sees a cardiologist', '', 7, 7, 0, 0)")
    conn.commit()
    conn.close()
    with Store.open(settings) as store:
        [prop] = store.current_propositions().items
        assert prop.sensitivity is None and store.untagged_count() == 1
        assert store.sensitivity_counts() == {"untagged": 1}
