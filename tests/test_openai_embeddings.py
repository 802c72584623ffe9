"""An OpenAI embedding model as a classifier scorer's embedding (the companion study,
arXiv:2412.20264, used text-embedding-3-small), through the real ``openai`` SDK against the
fake server of ``tests/servers/openai_server.py``: vectors in input order whatever the order of
``data``, base64 and float equal, batches within the API's limits, 429 retried, nothing embedded
twice, a crash resumed, the classifier trained on them end to end, bad config and a missing key
refused naming the key, and the cost projection."""

from __future__ import annotations

import base64
import math
import struct

import numpy as np
import pandas as pd
import pytest

from empathy_distill import cost, startup
from empathy_distill.core import runtime
from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation.embeddings import CachedEmbedder
from empathy_distill.evaluation.openai_embeddings import (
    MAX_INPUTS,
    OpenAIEmbedder,
    batches,
    decode_vector,
)
from empathy_distill.evaluation.scoring import score
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.evaluation.scoring.classifier import train as classifier_train
from empathy_distill.evaluation.scoring.classifier.features import response_rows
from empathy_distill.evaluation.scoring.classifier.models import ClassifierScorer
from empathy_distill.llm import LLMError
from empathy_distill.llm.pricing import PriceTable

from .servers.openai_server import Fault, OpenAIServer, hash_embedding
from .test_cost import PRICES
from .test_scoring_classifier import MARKERS, job_args, planted

MODEL = "text-embedding-3-small"
TEXTS = [f"text number {i} " + "word " * i for i in range(7)]


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


def embedder(server, **kwargs) -> OpenAIEmbedder:
    return OpenAIEmbedder(MODEL, "sk-test", base_url=server.url, **kwargs)


def requests_sent(server) -> int:
    return server.counts["POST /v1/embeddings"]


# --- the API's shape ----------------------------------------------------------------------------
def test_vectors_come_back_in_input_order_despite_shuffled_data(server):
    vectors = embedder(server, batch_size=3).encode(TEXTS)
    expected = np.array([hash_embedding(t) for t in TEXTS], dtype=np.float32)
    np.testing.assert_array_equal(vectors, expected)
    # 7 texts in requests of 3: 3 + 3 + 1 inputs, base64 asked for by the SDK's default
    assert sorted(len(b["input"]) for b in server.embedding_bodies) == [1, 3, 3]
    assert {b["encoding_format"] for b in server.embedding_bodies} == {"base64"}
    assert {b["model"] for b in server.embedding_bodies} == {MODEL}


def test_base64_and_float_forms_decode_equal(server):
    default = embedder(server).encode(TEXTS)
    as_float = embedder(server, encoding_format="float").encode(TEXTS)
    np.testing.assert_array_equal(default, as_float)
    assert [b["encoding_format"] for b in server.embedding_bodies] == ["base64", "float"]
    # a base64 string decoded here (a caller asking for base64 gets the string from the SDK)
    values = [0.5, -1.25, 3.0]
    packed = base64.b64encode(struct.pack("<3f", *values)).decode()
    np.testing.assert_array_equal(decode_vector(packed), np.array(values, dtype=np.float32))


def test_batches_stay_within_the_request_limits():
    short = ["abcd"] * 3000  # 1 token each
    assert [len(b) for b in batches(short, 4096)] == [MAX_INPUTS, 3000 - MAX_INPUTS]
    long = ["x" * 40_000] * 40  # 10,000 tokens each: 15 fit in the 150,000-token budget
    assert [len(b) for b in batches(long, 2048)] == [15, 15, 10]
    assert [i for b in batches(long, 2048) for i in b] == list(range(40))


def test_a_429_is_retried_after_the_servers_retry_after(server):
    server.embedding_faults.append(Fault(429, retry_after=0.25))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    vectors = embedder(server, sleep=sleep).encode(TEXTS[:2])
    assert waits == [0.25]
    assert requests_sent(server) == 2
    np.testing.assert_array_equal(vectors, [hash_embedding(t) for t in TEXTS[:2]])


def test_a_permanent_error_is_not_retried(server):
    server.embedding_faults.append(Fault(401))
    with pytest.raises(LLMError, match=r"text-embedding-3-small.*HTTP 401"):
        embedder(server).encode(TEXTS[:2])
    assert requests_sent(server) == 1


# --- the cache: nothing paid twice, a crash resumed ----------------------------------------------
def test_second_run_makes_no_request(server, tmp_path):
    path = tmp_path / "embeddings.sqlite"
    first = CachedEmbedder(embedder(server, batch_size=4), path).encode(TEXTS + TEXTS[:2])
    assert requests_sent(server) == 2  # 7 distinct texts, 4 per request
    again = CachedEmbedder(embedder(server, batch_size=4), path).encode(TEXTS)
    assert requests_sent(server) == 2
    np.testing.assert_array_equal(first[:7], again)
    # another model's vectors are another entry
    CachedEmbedder(OpenAIEmbedder("text-embedding-3-large", "k", base_url=server.url), path).encode(
        TEXTS[:1]
    )
    assert requests_sent(server) == 3


def test_a_crash_keeps_the_slices_already_back(server, tmp_path):
    path = tmp_path / "embeddings.sqlite"
    broken = {"on": True}

    def embed(text: str) -> list[float]:
        if broken["on"] and text == TEXTS[5]:
            raise RuntimeError("server down")
        return hash_embedding(text)

    server.embed_fn = embed
    # 2 texts per request, 1 request at a time: slices of 2 are stored as they come back
    crashing = CachedEmbedder(embedder(server, batch_size=2, concurrency=1, max_retries=0), path)
    with pytest.raises(LLMError):
        crashing.encode(TEXTS)
    assert requests_sent(server) == 3  # [0, 1], [2, 3] stored; [4, 5] failed
    broken["on"] = False
    resumed = CachedEmbedder(embedder(server, batch_size=2, concurrency=1), path).encode(TEXTS)
    sent = [text for body in server.embedding_bodies[3:] for text in body["input"]]
    assert sent == TEXTS[4:]
    np.testing.assert_array_equal(resumed, [hash_embedding(t) for t in TEXTS])


# --- the classifier, end to end -------------------------------------------------------------------
def planted_embedding(text: str) -> list[float]:
    """The planted words' counts plus 4 hash dimensions (the classifier tests' SpyEmbedder)."""
    words = text.lower().split()
    return [float(words.count(MARKERS[r])) for r in (1, 2, 3)] + hash_embedding(text, 4)


def classifier_config(tmp_path, embedding: dict | None, grid: tuple[str, ...] = ()) -> dict:
    return validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "scoring": {
                "scorers": {
                    "clf": {
                        "kind": "classifier",
                        "k_grid": [2, 4],
                        "cv_folds": 3,
                        "models": ["lr"],
                        "selections": ["none"],
                        **({"embedding": embedding} if embedding is not None else {}),
                    }
                },
                "grid": list(grid),
            },
        }
    )


def test_classifier_trains_on_openai_embeddings_end_to_end(
    server, tmp_path, monkeypatch, train, test_split
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.embed_fn = planted_embedding
    embedding = {"backend": "openai", "model": MODEL, "base_url": server.url, "batch_size": 64}
    config = classifier_config(tmp_path, embedding)
    identity, run = runtime.split(config)
    spec = scoring_specs.classifier_scorer(identity, "clf")
    assert spec["embedding"] == {"backend": "openai", "model": MODEL, "base_url": server.url}
    frames = planted(train), planted(test_split)
    args = job_args(tmp_path, frames)
    classifier_train.run(args, spec, run=run)

    # every distinct response text once (the synthetic split repeats a few responses)
    texts = set(response_rows(frames[0])["text"]) | set(response_rows(frames[1])["text"])
    sent = [t for b in server.embedding_bodies for t in b["input"]]
    assert len(sent) == len(set(sent)) == len(texts) and set(sent) == texts
    assert max(len(b["input"]) for b in server.embedding_bodies) <= 64
    model = ClassifierScorer.load(args.model_out)
    assert model.embedder_name == f"openai:{MODEL}"
    rows = pd.read_csv(args.table_out)
    chosen = rows[rows["chosen"]].iloc[0]
    # 4 of 5 responders carry their rating's word: at least 0.8 of the test rows are readable
    assert chosen["accuracy"] >= 0.75 > chosen["majority_accuracy"]

    # a rerun embeds nothing: every text is in the cache
    sent = requests_sent(server)
    classifier_train.run(job_args(tmp_path, frames, name="again"), spec, run=run)
    assert requests_sent(server) == sent

    # score_answers: only the answers' new texts are sent, and the planted word is read
    items = [
        score.ScoreItem(str(r.dialog_id), r.situation, r.speaker_uttr, f"I hear you {MARKERS[3]}")
        for r in frames[1].itertuples()
    ]
    records = score.run_scorer({**spec, "model_file": args.model_out}, items, runtime=run)
    assert [r["scores"] for r in records] == [[3]] * len(items)
    assert sum(len(b["input"]) for b in server.embedding_bodies[sent:]) == len(items)


# --- configuration and keys -----------------------------------------------------------------------
def test_minilm_stays_the_default_and_its_spec_is_unchanged(tmp_path):
    spec = scoring_specs.classifier_scorer(classifier_config(tmp_path, None), "clf")
    assert "embedding" not in spec
    assert startup.embedding_endpoint(classifier_config(tmp_path, None), "clf") is None


def test_operational_keys_are_runtime_not_spec(tmp_path):
    base = {"backend": "openai", "model": MODEL}
    one = classifier_config(tmp_path, {**base, "batch_size": 8, "max_retries": 1})
    two = classifier_config(tmp_path, {**base, "batch_size": 16, "max_retries": 2})
    spec = scoring_specs.classifier_scorer(runtime.split(one)[0], "clf")
    assert spec == scoring_specs.classifier_scorer(runtime.split(two)[0], "clf")
    run = runtime.split(one)[1]
    assert run["scoring"]["scorers"]["clf"]["embedding"]["batch_size"] == 8
    assert runtime.merge(*runtime.split(one))["scoring"] == one["scoring"]


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ({"backend": "openai"}, r"\['clf'\]\['embedding'\]\['model'\]: backend 'openai' needs"),
        (
            {"backend": "openai_compatible", "model": "e5"},
            r"\['clf'\]\['embedding'\]\['base_url'\]: backend openai_compatible needs",
        ),
        ({"backend": "minilm", "model": MODEL}, r"\['embedding'\]\['model'\]: backend minilm"),
        ({"backend": "cohere", "model": MODEL}, r"embedding.*backend"),
        ({"backend": "openai", "model": MODEL, "batch_size": 4096}, r"embedding.*batch_size"),
    ],
)
def test_bad_embedding_config_is_refused_naming_the_key(tmp_path, embedding, message):
    with pytest.raises(ConfigError, match=message):
        classifier_config(tmp_path, embedding)


def test_missing_key_is_refused_before_any_job(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = classifier_config(tmp_path, {"backend": "openai", "model": MODEL}, grid=("clf",))
    where = "scoring.scorers.clf.embedding"
    assert startup.missing_keys(startup.planned_endpoints(config)) == {where: "OPENAI_API_KEY"}
    for rule in ("train_classifier_scorer", "score_answers"):
        with pytest.raises(ConfigError, match=rf"{where} needs \$OPENAI_API_KEY, which is not"):
            startup.require_keys(config, [(rule, {"scorer": "clf"})])
    startup.check_endpoints(config)  # priced, nothing else wrong
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    startup.require_keys(config, [("train_classifier_scorer", {"scorer": "clf"})])
    # outside the grid: no key needed by the planned endpoints
    config = classifier_config(tmp_path, {"backend": "openai", "model": MODEL})
    assert where not in startup.planned_endpoints(config)


def test_an_unpriced_embedding_model_is_refused_at_start_up(tmp_path):
    config = classifier_config(tmp_path, {"backend": "openai", "model": "embed-9"}, grid=("clf",))
    with pytest.raises(ConfigError, match=r"scoring.scorers.clf.embedding.model: model 'embed-9'"):
        startup.check_endpoints(config)


def test_the_job_refuses_a_missing_key_too(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from empathy_distill.evaluation.embeddings import embedder_for

    config = classifier_config(tmp_path, {"backend": "openai", "model": MODEL})
    spec = scoring_specs.classifier_scorer(config, "clf")
    with pytest.raises(LLMError, match="OPENAI_API_KEY; it is not set"):
        embedder_for(spec)


# --- cost -----------------------------------------------------------------------------------------
def test_cost_projection_includes_the_embeddings(tmp_path, train, test_split):
    train3, test2 = train.head(3), test_split.head(2)
    config = classifier_config(tmp_path, {"backend": "openai", "model": MODEL}, grid=("clf",))
    config["generation"]["max_new_tokens"] = 10
    prices = PriceTable.load(PRICES)
    rows = {r.part: r for r in cost.scorer_rows(config, test2, prices, train3)}

    def tokens(frame):  # the study's text of every response, ceil(chars / 4) each
        suffixes = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy")
        suffixes += ("mixtral_empathy",)
        return sum(
            math.ceil(
                len(
                    f"Situation: {r['situation']}; Speaker Utterance: {r['speaker_uttr']};"
                    f" Response: {r[f'response_{s}']}"
                )
                / 4
            )
            for _, r in frame.iterrows()
            for s in suffixes
        )

    price = 0.02  # text-embedding-3-small, USD / 1M input tokens (resources/prices.yaml)
    for split, frame in (("train", train3), ("test", test2)):
        row = rows[f"embedding/responses_{split}"]
        assert (row.requests, row.cached, row.output_tokens) == (5 * len(frame), 0, 0)
        assert row.input_tokens == tokens(frame)
        assert row.cost_usd == pytest.approx(tokens(frame) * price / 1e6)
    base = rows["embedding/base"]  # one student's base answers, 10 tokens each
    answer = "x" * 40
    expected = sum(
        math.ceil(
            len(
                f"Situation: {r['situation']}; Speaker Utterance: {r['speaker_uttr']};"
                f" Response: {answer}"
            )
            / 4
        )
        for _, r in test2.iterrows()
    )
    assert (base.requests, base.input_tokens) == (len(test2), expected)
    assert {r.backend for r in rows.values()} == {"openai"}

    # texts already in the embedding cache cost nothing
    class Stored:
        name = f"openai:{MODEL}"

        def encode(self, texts):
            return np.zeros((len(texts), 2), dtype=np.float32)

    first = next(iter(train3.itertuples()))
    text = (
        f"Situation: {first.situation}; Speaker Utterance: {first.speaker_uttr};"
        f" Response: {first.response_human}"
    )
    CachedEmbedder(Stored(), tmp_path / "cache" / "embeddings.sqlite").encode([text])
    again = {r.part: r for r in cost.scorer_rows(config, test2, prices, train3)}
    row = again["embedding/responses_train"]
    assert row.cached == 1
    assert row.input_tokens == tokens(train3) - math.ceil(len(text) / 4)
