"""Forget by description asks first: through a real mcp.Client, in both protocol eras, over hybrid and
keyword-only retrieval, with the queries a careless user or an attacker would send. Every check of
what was forgotten reads the raw bytes of every file of the data dir (database, WAL, index, logs), on a
plaintext data dir and, for hybrid retrieval, on an encrypted one too (every page decrypted)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp_types import ElicitResult, Implementation

from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft, utcnow
from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.server.confirm import TOKEN_TTL, confirmations
from tests.conftest import eventually, make_settings
from tests.test_vector_index import pieces, stored_vector

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
RETRIEVAL = ["hybrid", "hybrid-encrypted", "keyword"]
FACTS = {
    "budget": ("Excel - Budget-Q4.xlsx, sheet 'Forecast'; mail from Jordan: numbers due Friday",
               "Priya is preparing the Q4 budget in Excel for Jordan, due Friday"),
    "marathon": ("Chrome - Porto Half Marathon registration confirmation, race date March 22",
                 "Priya registered for the Porto Half Marathon on March 22"),
    "meetings": ("The user said they never want meetings scheduled before 10am.",
                 "Priya does not want meetings before 10am"),
    "river": ("Chrome - article on river bank erosion along the Douro",
              "Priya reads about river bank erosion along the Douro"),
}
WORDLESS = ["*", "?!", "\U0001f642\U0001f642", "   ", "\x00", "the", "the of and", "Priya", "Priya's",
            "forget everything", "a1 b2", "') OR 1=1 --"]
#: `hybrid` and `keyword` runs use a plaintext data dir (its raw files are read as they are, the vector
#: index's vectors.sqlite3 included); `hybrid-encrypted` an encrypted one, whose pages `every_file` decrypts.
PLAIN = {"encrypt": False}
UNRELATED = ["favourite pizza toppings", "forget my bank account troubles", "DROP TABLE propositions; --"]


def seed(runtime: Runtime) -> dict[str, int]:
    ids = {}
    for i, (key, (content, text)) in enumerate(FACTS.items()):
        [obs] = runtime.store.add_observations([NewObservation(
            content=content, kind="screen", source="screen", observed_at=utcnow() - timedelta(hours=i))])
        [ids[key]] = runtime.store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
            draft=PropositionDraft(text=text, reasoning=f"seen: {content[:40]}", confidence=8, decay=6),
            evidence=(obs.id,)),)))
    return ids


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Everything gum_mcp logs, at every level, into the data dir's log file (as `serve` does)."""
    path = tmp_path / "data" / "logs" / "gum-mcp.log"
    path.parent.mkdir(parents=True, mode=0o700)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("gum_mcp")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield path
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()


def make_runtime(request: pytest.FixtureRequest, tmp_path: Path, retrieval: str) -> Runtime:
    hybrid = retrieval.startswith("hybrid")
    if hybrid:
        request.getfixturevalue("embedder")  # skips when the model is not installed
    mode = {"encrypt": True} if retrieval == "hybrid-encrypted" else PLAIN
    return Runtime(make_settings(tmp_path / "data", user_name="Priya", embedding="minilm" if hybrid else "none",
                                 **mode))


@pytest.fixture(params=RETRIEVAL)
async def gum(request: pytest.FixtureRequest, tmp_path: Path, log_file: Path) -> AsyncIterator[tuple[Runtime, dict]]:
    runtime = make_runtime(request, tmp_path, request.param)
    ids = seed(runtime)
    yield runtime, ids
    runtime.close()


def every_file(data_dir: Path) -> bytes:
    """`every_file_bytes` (tests/sqlcipher_pages.py), lower-cased."""
    from tests.sqlcipher_pages import every_file_bytes

    return every_file_bytes(data_dir).lower()


def data(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


def current(runtime: Runtime) -> set[int]:
    return {p.id for p in runtime.store.current_propositions(limit=100).items}


@pytest.mark.parametrize("mode", MODES)
async def test_a_query_without_a_content_word_is_refused(gum, mode: str) -> None:
    runtime, ids = gum
    async with Client(build_server(runtime), mode=mode) as client:
        await runtime.wait_owner_ready()
        for query in WORDLESS:
            result = await client.call_tool("forget", {"query": query})
            assert result.is_error, (query, result.structured_content)
            assert "nothing to match on" in result.content[0].text and "Traceback" not in result.content[0].text
            assert current(runtime) == set(ids.values()), query


@pytest.mark.parametrize("mode", MODES)
async def test_unrelated_words_and_sql_match_nothing(gum, mode: str) -> None:
    runtime, ids = gum
    async with Client(build_server(runtime), mode=mode) as client:
        await runtime.wait_owner_ready()
        answers = {}
        for query in UNRELATED:
            answers[query] = data(await client.call_tool("forget", {"query": query, "max_matches": 20}))
            assert current(runtime) == set(ids.values()), query
        for query, found in answers.items():
            assert found["status"] == "nothing" and found["matches"] == [] and not found["confirm_token"], query


def stored_vectors(runtime: Runtime, pid: int) -> list[bytes]:
    """Pieces of the stored vectors of proposition `pid` and of its evidence, as vectors.sqlite3 holds them,
    lower-cased as `every_file` is (none without a vector index)."""
    if runtime.index is None:
        return []
    settings = runtime.settings
    [obs] = runtime.store.evidence_ids(pid)
    found = pieces(stored_vector(settings, "propositions", pid)) + pieces(stored_vector(settings, "observations", obs))
    return [piece.lower() for piece in found]


@pytest.mark.parametrize("mode", MODES)
async def test_two_steps_remove_exactly_what_the_preview_showed(gum, mode: str) -> None:
    runtime, ids = gum
    data_dir = runtime.settings.data_dir
    async with Client(build_server(runtime), mode=mode) as client:
        await runtime.wait_owner_ready()
        vectors = stored_vectors(runtime, ids["marathon"])
        assert bool(vectors) == (runtime.settings.embedding != "none"), runtime.index_problem
        assert all(piece in every_file(data_dir) for piece in vectors)  # the scans below see them
        preview = data(await client.call_tool("forget", {"query": "my half marathon race", "with_evidence": True}))
        assert preview["status"] == "confirm" and preview["confirm_token"]
        assert [m["id"] for m in preview["matches"]] == [ids["marathon"]]
        match = preview["matches"][0]
        assert match["text"] == FACTS["marathon"][1] and "'marathon'" in match["why"]
        assert current(runtime) == set(ids.values())  # the preview removed nothing
        assert b"marathon" in every_file(data_dir)

        done = data(await client.call_tool("forget", {"confirm_token": preview["confirm_token"]}))
        assert done["status"] == "removed" and done["proposition_ids"] == [ids["marathon"]]
        assert done["observations_deleted"] == 1
        assert current(runtime) == set(ids.values()) - {ids["marathon"]}
        again = await client.call_tool("forget", {"confirm_token": preview["confirm_token"]})
        assert again.is_error and "already used" in again.content[0].text

        left = data(await client.call_tool("query_user", {"query": "Porto half marathon"}))
        assert all("Porto" not in (p["text"] or "") for p in left["propositions"])
        # the owner's index applies the forget: its vectors leave every file while it runs (no close needed)
        await eventually(lambda: not [piece for piece in vectors if piece in every_file(data_dir)])
        blob = every_file(data_dir)
        assert b"marathon" not in blob and b"porto" not in blob
    blob = every_file(data_dir)
    assert b"marathon" not in blob and b"porto" not in blob
    assert not [piece for piece in vectors if piece in blob]
    assert b"budget" in blob and b"erosion" in blob and b"meetings" in blob
    assert not (data_dir / "chroma").exists()


async def test_search_syntax_is_words_and_each_match_says_why(gum) -> None:
    runtime, ids = gum
    async with Client(build_server(runtime), mode="legacy") as client:
        await runtime.wait_owner_ready()
        preview = data(await client.call_tool("forget", {"query": 'marathon* OR "half" NEAR(porto) -budget'}))
        assert [m["id"] for m in preview["matches"]] == [ids["marathon"]]
        assert set(preview["matches"][0]["words"]) >= {"marathon", "half", "porto"}
        many = data(await client.call_tool("forget", {"query": "Excel budget meetings marathon erosion",
                                                      "max_matches": 2}))
        assert len(many["matches"]) <= 2 and many["more_matches"] >= 0
        assert all(m["why"] for m in many["matches"])
        assert current(runtime) == set(ids.values())


async def test_a_token_works_once_for_its_client_within_five_minutes_and_only_if_nothing_changed(
    request: pytest.FixtureRequest, tmp_path: Path, log_file: Path,
) -> None:
    runtime = make_runtime(request, tmp_path, "keyword")
    ids = seed(runtime)
    server = build_server(runtime, manage_runtime=False)  # several clients at once: one runtime, run here
    query = {"query": "half marathon"}
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            async with Client(server, mode="legacy") as first, Client(server, mode="legacy") as second:
                token = data(await first.call_tool("forget", query))["confirm_token"]
                stolen = await second.call_tool("forget", {"confirm_token": token})
                assert stolen.is_error and "another client" in stolen.content[0].text
                assert (await first.call_tool("forget", {"confirm_token": token})).is_error  # burnt by the attempt

                token = data(await first.call_tool("forget", query))["confirm_token"]
                wrong = await first.call_tool("forget", {"confirm_token": token[:-4] + "AAAA"})
                assert wrong.is_error and "not a token" in wrong.content[0].text

                token = data(await first.call_tool("forget", query))["confirm_token"]
                pending = confirmations(runtime)
                real_clock = pending.clock
                pending.clock = lambda: real_clock() + TOKEN_TTL + 1
                try:
                    late = await first.call_tool("forget", {"confirm_token": token})
                finally:
                    pending.clock = real_clock
                assert late.is_error and "expired" in late.content[0].text

                token = data(await first.call_tool("forget", query))["confirm_token"]
                successor = data(await first.call_tool("give_feedback", {"id": ids["marathon"], "verdict": "confirm"}))
                changed = await first.call_tool("forget", {"confirm_token": token})
                assert changed.is_error and "changed since the preview" in changed.content[0].text
                assert successor["successor"]["id"] in current(runtime)
            assert len(current(runtime)) == len(FACTS)

            desktop, ide = Implementation(name="desktop", version="1"), Implementation(name="ide", version="1")
            async with Client(server, mode="2026-07-28", client_info=desktop) as a, \
                    Client(server, mode="2026-07-28", client_info=ide) as b:
                token = data(await a.call_tool("forget", query))["confirm_token"]
                assert (await b.call_tool("forget", {"confirm_token": token})).is_error
                token = data(await a.call_tool("forget", query))["confirm_token"]
                other = await a.call_tool("forget", {"query": "Excel budget", "confirm_token": token})
                assert other.is_error and "another query" in other.content[0].text
                token = data(await a.call_tool("forget", query))["confirm_token"]
                more = await a.call_tool("forget", {"confirm_token": token, "with_evidence": True})
                assert more.is_error and "decide it in the preview" in more.content[0].text
                token = data(await a.call_tool("forget", query))["confirm_token"]
                assert data(await a.call_tool("forget", {**query, "confirm_token": token}))["status"] == "removed"
            assert len(current(runtime)) == len(FACTS) - 1
            tg.cancel_scope.cancel()
    finally:
        runtime.close()


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_with_elicitation_asks_the_person(
    request: pytest.FixtureRequest, tmp_path: Path, log_file: Path, mode: str,
) -> None:
    runtime = make_runtime(request, tmp_path, "keyword")
    ids = seed(runtime)
    asked: list[str] = []
    answers = iter([ElicitResult(action="decline"), ElicitResult(action="accept", content={"confirm": False}),
                    ElicitResult(action="accept", content={"confirm": True})])

    async def person(_context, params) -> ElicitResult:
        asked.append(params.message)
        return next(answers)

    try:
        async with Client(build_server(runtime), mode=mode, elicitation_callback=person) as client:
            for _ in range(2):
                said_no = data(await client.call_tool("forget", {"query": "the Q4 budget in Excel"}))
                assert said_no["status"] == "declined" and said_no["confirm_token"] is None
                assert current(runtime) == set(ids.values())
            done = data(await client.call_tool("forget", {"query": "the Q4 budget in Excel"}))
            assert done["status"] == "removed" and done["proposition_ids"] == [ids["budget"]]
        assert len(asked) == 3 and all(FACTS["budget"][1] in message for message in asked)
        assert current(runtime) == set(ids.values()) - {ids["budget"]}
        blob = every_file(runtime.settings.data_dir)
        assert b"jordan" in blob  # its evidence was kept (with_evidence was not asked for)
    finally:
        runtime.close()


async def test_forget_by_app_and_a_partial_forget_through_the_client(
    request: pytest.FixtureRequest, tmp_path: Path, log_file: Path,
) -> None:
    runtime = make_runtime(request, tmp_path, "keyword")
    store = runtime.store
    [chat, code] = store.add_observations([
        NewObservation(content="Screen at 09:30 in Signal\nchat with Sam about the zanzibarsurprise party",
                       kind="screen", source="screen", app="Signal"),
        NewObservation(content="Screen at 09:31 in Code\nediting party_planner.py", kind="screen", source="screen",
                       app="Code"),
    ])
    [party] = store.complete_batch(BatchResult(observation_ids=(chat.id, code.id), new=(NewProposition(
        draft=PropositionDraft(text="Priya plans the zanzibarsurprise party for Sam", reasoning="chat and code",
                               confidence=7, decay=4), evidence=(chat.id, code.id)),)))
    try:
        async with Client(build_server(runtime), mode="2026-07-28") as client:
            gone = data(await client.call_tool("forget", {"app": "signal"}))
            assert gone["status"] == "removed" and gone["observations_deleted"] == 1
            assert gone["rederiving"] == [party] and party in gone["proposition_ids"]
            found = data(await client.call_tool("query_user", {"query": "zanzibarsurprise party"}))
            assert found["propositions"] == []  # not served until re-derived from what is left
        assert store.get_observation(code.id).status == "pending"  # queued for the engine
        assert b"zanzibarsurprise" not in every_file(runtime.settings.data_dir)
    finally:
        runtime.close()
