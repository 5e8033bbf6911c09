"""`gum-mcp forget --query` asks first, as the MCP tool does: it shows the matching propositions and why,
asks, and removes exactly those (`--yes` skips the question). Over hybrid and keyword-only retrieval;
what was forgotten is looked for in the raw bytes of every file of the data dir."""

from __future__ import annotations

import io
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from gum_mcp.cli import main
from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft, utcnow
from gum_mcp.store import Store
from tests.conftest import make_settings
from tests.test_forget_confirm import FACTS, PLAIN, UNRELATED, WORDLESS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["hybrid", "keyword"])
def data_dir(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("GUM_") and name != "GUM_MODELS_DIR":
            monkeypatch.delenv(name)
    if request.param == "hybrid":
        request.getfixturevalue("embedder")  # skips when the model is not installed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GUM_USER_NAME", "Priya")
    monkeypatch.setenv("GUM_EMBEDDING", "minilm" if request.param == "hybrid" else "none")
    if PLAIN:
        monkeypatch.setenv("GUM_ENCRYPT", "0")
    return tmp_path / "data"


def seed(data_dir: Path) -> dict[str, int]:
    ids = {}
    with Store.open(make_settings(data_dir, **PLAIN)) as store:
        for i, (key, (content, text)) in enumerate(FACTS.items()):
            [obs] = store.add_observations([NewObservation(content=content, kind="screen", source="screen",
                                                           observed_at=utcnow() - timedelta(hours=i))])
            [ids[key]] = store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
                draft=PropositionDraft(text=text, reasoning=f"seen: {content[:40]}", confidence=8, decay=6),
                evidence=(obs.id,)),)))
    return ids


def run(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *argv: str, answer: str = ""
        ) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def current(data_dir: Path) -> set[int]:
    with Store.open(make_settings(data_dir, **PLAIN)) as store:
        return {p.id for p in store.current_propositions().items}


def every_file(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()).lower()


def test_forget_query_shows_why_asks_and_removes_exactly_those(data_dir: Path, capsys, monkeypatch) -> None:
    ids = seed(data_dir)
    for query in WORDLESS:
        code, _, err = run(capsys, monkeypatch, "forget", "--query", query)
        assert code == 2 and "nothing to match on" in err, query
    for query in UNRELATED:
        code, out, _ = run(capsys, monkeypatch, "forget", "--query", query, answer="y\n")
        assert code == 0 and "nothing matched" in out, query
    assert current(data_dir) == set(ids.values())

    code, out, err = run(capsys, monkeypatch, "forget", "--query", "my half marathon race", "--with-evidence",
                         answer="n\n")
    assert code == 1 and f"[{ids['marathon']}] {FACTS['marathon'][1]}" in out and "'marathon'" in out
    assert "Forget these 1 proposition(s) for good? [y/N]" in err and "nothing was removed" in err
    assert current(data_dir) == set(ids.values())
    code, out, _ = run(capsys, monkeypatch, "forget", "--query", "my half marathon race", "--with-evidence")
    assert code == 1 and current(data_dir) == set(ids.values())  # no answer (end of input) is no

    code, out, _ = run(capsys, monkeypatch, "forget", "--query", "my half marathon race", "--with-evidence",
                       answer="y\n")
    assert code == 0 and "forgot 1 observation(s) and 1 proposition version(s)" in out
    assert current(data_dir) == set(ids.values()) - {ids["marathon"]}
    blob = every_file(data_dir)
    assert b"marathon" not in blob and b"porto" not in blob and b"budget" in blob and b"erosion" in blob


def test_forget_query_yes_skips_the_question(data_dir: Path, capsys, monkeypatch) -> None:
    ids = seed(data_dir)
    code, out, _ = run(capsys, monkeypatch, "forget", "--query", "Q4 budget in Excel", "--json")
    assert code == 1 and [m["id"] for m in json.loads(out)["matches"]] == [ids["budget"]]
    code, out, _ = run(capsys, monkeypatch, "forget", "--query", "Q4 budget in Excel", "--yes", "--json")
    assert code == 0 and json.loads(out)["proposition_ids"] == [ids["budget"]]
    assert current(data_dir) == set(ids.values()) - {ids["budget"]}
    code, _, err = run(capsys, monkeypatch, "forget", "--query", "budget", "--app", "Signal")
    assert code == 2 and "exactly one of" in err
