"""Retrieval's per-query calibration (gum_mcp.retrieval.calibration, fusion) and its near-duplicate rule
(gum_mcp.retrieval.diversity), with the real MiniLM model where similarity matters."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft, utcnow
from gum_mcp.index.vector_index import VectorIndex
from gum_mcp.retrieval import DUPLICATE_SIMILARITY, Null, near_duplicates, search
from gum_mcp.retrieval.calibration import SAMPLES, null_for
from gum_mcp.retrieval.diversity import same_wording, wording
from gum_mcp.retrieval.fusion import fuse, vector_relevance
from gum_mcp.retrieval.hits import Candidate
from gum_mcp.store import Store
from tests.conftest import REPO

NOW = utcnow()
PAIRS = json.loads((REPO / "tests" / "fixtures" / "near_duplicates.json").read_text(encoding="utf-8"))

FOOD = (
    "Maya has been vegetarian for ten years.",
    "Maya is lactose intolerant and asks for oat milk.",
    "Maya avoids loud, crowded restaurants.",
    "Maya's favourite food is Ethiopian, followed by Sichuan.",
    "Maya cannot stand mushrooms.",
    "Maya does not drink alcohol.",
)
OTHER = (
    "Maya designs in Figma and runs workshops in FigJam.",
    "Maya commutes to the office by Metrolink tram.",
    "Maya's mother lives in Lagos; they talk every Sunday.",
    "Maya goes bouldering twice a week.",
    "Maya is learning Japanese on Duolingo.",
    "Maya's annual review is next Tuesday.",
    "Maya keeps Slack notifications off in the evening.",
    "Maya reads science fiction, especially Le Guin.",
)


@pytest.fixture
def index(settings, store, embedder):
    with VectorIndex.open(settings, embedder) as opened:
        yield opened


def add(store: Store, text: str, *, confidence: int = 7, decay: int = 8, days_ago: float = 1.0) -> int:
    draft = PropositionDraft(text=text, confidence=confidence, decay=decay)
    [pid] = store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(draft=draft),)),
                                 at=NOW - timedelta(days=days_ago))
    return pid


def cosine(embedder, a: str, b: str) -> float:
    va, vb = embedder.embed([a, b])
    return float(np.dot(va, vb))


# -- the null distribution


def test_vector_relevance_is_anchored_on_what_chance_reaches():
    null = Null(mean=0.1, std=0.05, size=500)
    e_n = math.sqrt(2 * math.log(500))
    assert null.chance_max == pytest.approx(e_n)
    assert null.relevance(0.1) == 0.0 and null.relevance(-0.3) == 0.0 and null.relevance(None) == 0.0
    assert null.relevance(0.1 + e_n * 0.05) == pytest.approx(0.5)  # the luckiest of N unrelated items
    assert null.relevance(0.1 + 2 * e_n * 0.05) == pytest.approx(1.0) and null.relevance(0.99) == 1.0
    # more items: a high score is less telling
    assert Null(0.1, 0.05, 50_000).relevance(0.35) < null.relevance(0.35) < Null(0.1, 0.05, 50).relevance(0.35)
    assert vector_relevance(0.42) == 0.42 and vector_relevance(-0.2) == 0.0  # no null: the cosine


def test_the_null_is_measured_per_query_and_per_collection(store, index, embedder):
    for text in FOOD + OTHER:
        add(store, text)
    index.catch_up(store)
    broad, name = embedder.embed(["what is she like", "E0382"])
    a, b = null_for(store, index, "propositions", broad), null_for(store, index, "propositions", name)
    assert a is not None and b is not None and a.size == b.size == len(FOOD + OTHER)
    assert a.mean != pytest.approx(b.mean) and a.std > 0 and b.std > 0
    sample = np.stack(list(index.embeddings("propositions", store.current_proposition_ids()).values()))
    assert a.mean == pytest.approx(float((sample @ broad).mean()), abs=1e-5)
    assert a.std == pytest.approx(float((sample @ broad).std()), abs=1e-5)
    # every hybrid hit's vector relevance is its cosine against the query's own null
    hits = search(store, index, "what does she eat", 5, now=NOW)
    # the null of the query's vector as the search embedded it (`embed_query`: GUM_QUERY_PRECISION)
    null = null_for(store, index, "propositions", embedder.embed_query("what does she eat"))
    for hit in hits:
        assert 0 < hit.relevance <= 1 and hit.similarity is not None
    assert hits[0].relevance >= null.relevance(hits[0].similarity) - 1e-6


def test_the_reference_sample_follows_the_collection(store, index, embedder):
    SAMPLES.clear()
    vector = embedder.embed(["food"])[0]
    add(store, FOOD[0])
    index.catch_up(store)
    assert null_for(store, index, "propositions", vector) is None  # one item: no spread to measure
    [hit] = search(store, index, "food", 3, now=NOW)  # the cosine itself then
    assert hit.relevance == pytest.approx(max(0.0, hit.similarity), rel=1e-5)
    for text in FOOD[1:] + OTHER:
        add(store, text)
    index.catch_up(store)
    null = null_for(store, index, "propositions", vector)
    assert null is not None and null.size == len(FOOD + OTHER)


def test_noisy_or_fusion():
    cands = [Candidate("proposition", 1, bm25=0.0, bm25_rank=None, similarity=0.9, vector_rank=0),
             Candidate("proposition", 2, bm25=5.0, bm25_rank=0, similarity=None, vector_rank=None),
             Candidate("proposition", 3, bm25=5.0, bm25_rank=1, similarity=0.9, vector_rank=1),
             Candidate("proposition", 4, bm25=0.0, bm25_rank=None, similarity=0.0, vector_rank=2)]
    null = Null(mean=0.1, std=0.1, size=100)
    fuse(cands, "hybrid", ideal=10.0, null=null)
    v, b = null.relevance(0.9), 0.5
    # a keyword match counts by how believable it is: its own coverage (b) or the meaning's agreement (v)
    assert [c.relevance for c in cands] == pytest.approx([v, b * b, 1 - (1 - v) * (1 - b * max(b, v)), 0.0])
    assert cands[0].vector_score == pytest.approx(v) and cands[1].vector_score == 0.0


# -- near-duplicates


def test_the_near_duplicate_rule_on_the_measured_pairs(embedder):
    same = [(a, b, cosine(embedder, a, b)) for a, b in PAIRS["same"]]
    distinct = [(a, b, cosine(embedder, a, b)) for a, b in PAIRS["distinct"]]
    # cosine alone cannot tell them apart: distinct facts score as high as restatements
    assert max(c for *_, c in distinct) > 0.99 and min(c for *_, c in same) < DUPLICATE_SIMILARITY
    assert sum(c >= DUPLICATE_SIMILARITY for *_, c in distinct) >= 8
    # with the wording rule, no distinct pair is a near-duplicate ...
    assert not [(a, b) for a, b, c in distinct if near_duplicates(a, b, c)]
    # ... and every restatement in the same words clears the threshold
    worded = [(a, b, c) for a, b, c in same if same_wording(wording(a), wording(b))]
    assert len(worded) >= 6 and all(c >= DUPLICATE_SIMILARITY for *_, c in worded)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("Priya is vegetarian.", "Priya is a vegetarian.", True),
    ("Priya is training for the Porto Half Marathon in March.", "Priya trains for the Porto Half Marathon in March.",
     True),
    ("Maya does not drink alcohol.", "Maya doesn't drink alcohol.", True),
    ("Hanne edited bio101_lab3.pdf on 20 February.", "Hanne edited bio101_lab3.pdf on 15 February.", False),
    ("Priya walks to the bakery after lunch", "Priya walks to the bakery before lunch", False),
    ("Priya prefers Go to Java for services", "Priya prefers Java to Go for services", False),
    ("Priya runs sprint planning every other Monday", "Priya runs sprint planning every Monday", False),
    ("Maya drinks alcohol.", "Maya does not drink alcohol.", False),
])
def test_same_wording(a, b, same):
    assert same_wording(wording(a), wording(b)) is same


def test_similar_but_distinct_preferences_keep_their_places(store, index, embedder):
    prefs = ("Maya prefers quiet restaurants.", "Maya prefers vegetarian restaurants.",
             "Maya prefers restaurants with outdoor seating.", "Maya prefers restaurants near a tram stop.")
    ids = [add(store, text) for text in prefs]
    for text in OTHER:
        add(store, text)
    index.catch_up(store)
    vectors = embedder.embed(list(prefs))
    assert min(float(np.dot(a, b)) for n, a in enumerate(vectors) for b in vectors[n + 1:]) > 0.7
    query = "suggest a restaurant for Friday night"
    plain = [h.id for h in search(store, index, query, 5, now=NOW, diversify=False)]
    diverse = [h.id for h in search(store, index, query, 5, now=NOW)]
    assert diverse == plain and set(ids) <= set(diverse[:4])  # resembling each other costs nothing


def test_a_restatement_comes_after_every_distinct_relevant_hit(store, index):
    first = add(store, "Maya has been vegetarian for ten years.")
    again = add(store, "Maya has been a vegetarian for ten years.", days_ago=2)
    for text in FOOD[1:] + OTHER:
        add(store, text)
    index.catch_up(store)
    plain = [h.id for h in search(store, index, "is she vegetarian", 3, now=NOW, diversify=False)]
    assert plain[:2] == [first, again]
    diverse = [h.id for h in search(store, index, "is she vegetarian", 3, now=NOW)]
    assert diverse[0] == first and again not in diverse[:2]
