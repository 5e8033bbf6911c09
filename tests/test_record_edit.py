"""record_edit (issue 27): the local, bounded, redacted diff, and the evidence-linked preference the engine
learns from it, through a real MCP client."""

from __future__ import annotations

from pathlib import Path

import pytest

from gum_mcp.domain import InvalidInput
from gum_mcp.engine import edits
from gum_mcp.engine.instructions import states_rule
from tests.conftest import eventually
from tests.fake_provider import FakeLLMServer
from tests.test_decide import BULLETS, client, data, engine_runtime
from tests.test_redaction import GITHUB_CLASSIC

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

UNCHANGED = "The appendix lists every table we moved, with its row counts and owners. " * 40
BEFORE = ("Hi Jordan, I wanted to give you an update on the migration. We finished moving the billing tables last "
          "week and the reports now run on the new cluster.\n\n" + UNCHANGED)
AFTER = "Hi Jordan,\n- billing tables moved\n- reports run on the new cluster\n\n" + UNCHANGED
EMAIL = {"question": "Should the status email to Jordan be bullet points or paragraphs?",
         "options": ["short bullet points", "long paragraphs"], "context": "drafting a status email to Jordan"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_diff_is_local_bounded_and_never_a_rule() -> None:
    report = edits.describe(BEFORE, AFTER, "status email to Jordan " * 50, "writing-assistant")
    assert report.content.startswith(edits.EDIT_MARK) and not states_rule(report.content + " always")
    assert "appendix" not in report.content  # unchanged text stays out: the changes, not the documents
    assert "0 -> 2 bullet points" in report.content and len(report.content) <= edits.REPORT_CHARS
    assert report.content.count("status email to Jordan") <= edits.CONTEXT_CHARS // 20
    many = edits.describe(" ".join(f"w{i}" for i in range(400)), " ".join(f"w{i}" if i % 7 else f"x{i}"
                                                                         for i in range(400)))
    assert many.changes > edits.MAX_HUNKS and "more changes not shown" in many.content
    assert len(many.content) <= edits.REPORT_CHARS
    for before, after in (("same text", "same  text"), ("", " ")):
        with pytest.raises(InvalidInput):
            edits.describe(before, after)


async def test_record_edit_learns_a_preference_that_forgetting_the_edit_removes(
        fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    runtime = await engine_runtime(fake_provider, tmp_path / "data")
    try:
        async with client(runtime, "writing-assistant") as agent:
            await runtime.wait_owner_ready()
            sent = data(await agent.call_tool("record_edit", {
                "before": BEFORE, "after": AFTER + f"\ntoken {GITHUB_CLASSIC}", "context": "status email to Jordan",
                "source": "writing-assistant"}))
            assert sent["changes"] >= 1 and sent["redactions"] == 1 and sent["words_before"] > sent["words_after"] - 5
            stored = runtime.store.get_observation(sent["id"])
            assert GITHUB_CLASSIC not in (stored.content or "") and "appendix" not in (stored.content or "")

            def preferences() -> list:
                return list(runtime.store.current_propositions(kind="preference").items)

            [learnt] = await eventually(preferences)
            assert learnt.text == BULLETS and learnt.confidence == 3 and learnt.applies_to == "emails to Jordan"
            assert runtime.store.evidence_ids(learnt.id) == [sent["id"]]
            prompts = [m["content"] for body in fake_provider.bodies() for m in body["messages"] if m["role"] == "user"]
            assert prompts and all("appendix" not in p and GITHUB_CLASSIC not in p for p in prompts)
            # one edit: a guess, so gum-mcp advises asking
            assert data(await agent.call_tool("decide_or_ask", EMAIL))["outcome"] == "ask"

            # the edit forgotten: the preference it taught is gone
            gone = data(await agent.call_tool("forget", {"source": "writing-assistant"}))
            assert learnt.id in gone["proposition_ids"]
            assert preferences() == [] and runtime.store.get_proposition(learnt.id).applies_to is None
    finally:
        runtime.close()


async def test_repeated_edits_reinforce_the_preference_until_it_decides(
        fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    runtime = await engine_runtime(fake_provider, tmp_path / "data")
    try:
        async with client(runtime, "writing-assistant") as agent:
            await runtime.wait_owner_ready()
            ids = []
            for n in range(3):
                sent = data(await agent.call_tool("record_edit", {
                    "before": f"Hi Jordan, update number {n}: the migration went well and the reports are faster.",
                    "after": f"Hi Jordan,\n- update {n}\n- migration fine\n- reports faster",
                    "context": "status email to Jordan"}))
                ids.append(sent["id"])

                async def processed(oid: int = sent["id"]) -> bool:
                    return runtime.store.get_observation(oid).status == "processed"

                await eventually(processed)
            [learnt] = runtime.store.current_propositions(kind="preference").items
            assert learnt.support_count == 3 and sorted(runtime.store.evidence_ids(learnt.id)) == ids
            decided = data(await agent.call_tool("decide_or_ask", EMAIL))
            assert (decided["outcome"], decided["option"], decided["decided_by"]) == ("decide", "short bullet points",
                                                                                      "preference")
            assert [p["id"] for p in decided["rests_on"]] == [learnt.id] and decided["rests_on"][0]["kind"] == \
                "preference"
    finally:
        runtime.close()
