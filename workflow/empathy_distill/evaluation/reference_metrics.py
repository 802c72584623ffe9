"""Reference-based metrics of every answer set: how close the answers are to the human response
and to the teacher's answer of each test dialogue, and how varied they are.

Why: the judges say which answer is more empathetic, not whether a student stays on topic or
just repeats itself; the PRIDE abstract and most empathetic-dialogue papers report "accuracy and
semantic relevance" with these reference metrics, so a reader can place the students there.

Metrics, each from a well-kept library where one exists:

- BLEU-1 and BLEU-2 (Papineni et al. 2002): corpus-level BLEU with uniform weights up to
  order 1 / 2 and the brevity penalty, by ``sacrebleu`` (Post 2018, "A Call for Clarity in
  Reporting BLEU Scores": one tokenisation and signature, so numbers are comparable; NLTK's
  corpus_bleu leaves tokenisation to the caller). Tokens: sacrebleu's ``13a`` tokenizer (the
  mteval-v13a rules: punctuation split from words), lowercased; scale 0-100 as sacrebleu reports.
- ROUGE-L F1 (Lin 2004): longest common subsequence per answer, by Google's ``rouge-score``
  (its tokenizer: lowercase, non-alphanumerics dropped; no stemming).
- distinct-1/2 (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
  Conversation Models", NAACL): distinct n-grams / all n-grams over the answer set (n-grams
  within an answer, same tokens as BLEU). It does not depend on the reference.
- Embedding cosine: all-MiniLM-L6-v2 vectors of answer and reference (``embeddings.py``,
  offline, cached), unit-normalised, so the cosine is their dot product.

ROUGE-L and the cosine are per dialogue: the table gives their mean with a percentile bootstrap
interval over dialogues (``stats.bootstrap_mean_ci``, seeded by ``evaluation.seed``, as every
other table). BLEU and distinct-n are corpus-level: one number per answer set.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..core import specs
from ..core.atomic import write_csv
from ..core.command import run_cli
from . import specs as evaluation_specs
from .answer_sets import HUMAN, AnswerSet, human_set, read_answer_set
from .embeddings import Embedder, default_embedder
from .records import n_words, read_split
from .stats import bootstrap_mean_ci

#: sacrebleu settings: its 13a tokenizer, lowercased.
BLEU_TOKENIZER = "13a"
BLEU_LOWERCASE = True

COLUMNS = (
    "answer_set",
    "answer_by",
    "kind",
    "student",
    "method",
    "strategy",
    "stage",
    "reference",
    "n",
    "mean_words",
    "bleu1",
    "bleu2",
    "rouge_l_f1",
    "rouge_l_f1_ci_low",
    "rouge_l_f1_ci_high",
    "embedding_cosine",
    "embedding_cosine_ci_low",
    "embedding_cosine_ci_high",
    "distinct1",
    "distinct2",
)


def bleu(hypotheses: Sequence[str], references: Sequence[str], order: int) -> float:
    """Corpus BLEU-``order`` (0-100) of the answers against one reference each."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(max_ngram_order=order, tokenize=BLEU_TOKENIZER, lowercase=BLEU_LOWERCASE)
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def bleu_signature(order: int) -> str:
    """sacrebleu's signature of the BLEU settings (tokenizer, case, smoothing, version)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(max_ngram_order=order, tokenize=BLEU_TOKENIZER, lowercase=BLEU_LOWERCASE)
    metric.corpus_score(["a"], [["a"]])  # the signature names the number of references
    return str(metric.get_signature())


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """ROUGE-L F1 of each answer against its reference."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array(
        [
            scorer.score(target=ref, prediction=hyp)["rougeL"].fmeasure
            for hyp, ref in zip(hypotheses, references, strict=True)
        ],
        dtype=float,
    )


def tokens(text: str) -> list[str]:
    """The tokens BLEU counts (sacrebleu's 13a tokenizer, lowercased), for distinct-n."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenized = Tokenizer13a()(text.strip())
    return (tokenized.lower() if BLEU_LOWERCASE else tokenized).split()


def distinct(answers: Sequence[str], n: int) -> float:
    """distinct-n (Li et al. 2016): distinct n-grams / all n-grams of the answers; NaN when the
    answers hold no n-gram."""
    grams = [
        tuple(words[i : i + n]) for words in map(tokens, answers) for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else float("nan")


def cosines(embedder: Embedder, hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Cosine similarity of each answer's embedding with its reference's."""
    a = np.asarray(embedder.encode(list(hypotheses)), dtype=float)
    b = np.asarray(embedder.encode(list(references)), dtype=float)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0)


def _mean_ci(name: str, values: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    low, high = bootstrap_mean_ci(values, n_boot, seed)
    mean = float(values.mean()) if values.size else float("nan")
    return {name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high}


def reference_table(
    answer_sets: Sequence[AnswerSet],
    references: Sequence[AnswerSet],
    dialog_ids: Sequence[str],
    embedder: Embedder,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """One row per (answer set, reference), answer-set major; a set is never its own
    reference (the teacher against the teacher). Every set must answer every dialogue."""
    # Every file is checked before any model is loaded: a missing answer stops the job at once.
    texts = {s.tag: [s.answer(d) for d in dialog_ids] for s in (*references, *answer_sets)}
    rows = []
    for answer_set in answer_sets:
        answers = texts[answer_set.tag]
        info = answer_set.info
        shared = {
            "answer_set": answer_set.tag,
            "answer_by": answer_set.label,
            "kind": info["kind"],
            **{k: info.get(k, "") for k in ("student", "method", "strategy", "stage")},
        }
        variety = {"distinct1": distinct(answers, 1), "distinct2": distinct(answers, 2)}
        for reference in references:
            if reference.tag == answer_set.tag:
                continue
            targets = texts[reference.tag]
            rows.append(
                {
                    **shared,
                    "reference": reference.tag,
                    "n": len(answers),
                    "mean_words": float(np.mean([n_words(a) for a in answers]))
                    if answers
                    else float("nan"),
                    "bleu1": bleu(answers, targets, 1),
                    "bleu2": bleu(answers, targets, 2),
                    **_mean_ci("rouge_l_f1", rouge_l(answers, targets), n_boot, seed),
                    **_mean_ci(
                        "embedding_cosine", cosines(embedder, answers, targets), n_boot, seed
                    ),
                    **variety,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def table_of_spec(
    spec: specs.Spec, test_path: str, embedder: Embedder | None = None
) -> pd.DataFrame:
    """The table of a ``specs.reference_metrics`` spec: the answers files its manifest lists
    (``grid.answer_path``), the human responses of the test split, the teacher's answers."""
    test = read_split(test_path)
    dialog_ids = [str(d) for d in test["dialog_id"]]
    manifest = evaluation_specs.answer_manifest(spec)
    sets = {entry["answers"]: read_answer_set(entry["path"]) for entry in manifest}
    human = human_set(test, test_path)
    references = [human if tag == HUMAN else sets[tag] for tag in spec["references"]]
    embedder = embedder or default_embedder(spec["cache_dir"])
    return reference_table(
        list(sets.values()),
        references,
        dialog_ids,
        embedder,
        spec["bootstrap_samples"],
        spec["seed"],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="BLEU-1/2, ROUGE-L, distinct-1/2 and embedding similarity of every answer "
        "set against the human and the teacher responses."
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--out", required=True, help="results/tables/reference_metrics.csv")
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, evaluation_specs.reference_metrics)
    table = table_of_spec(spec, args.test)
    write_csv(args.out, table)
    print(f"BLEU: sacrebleu {bleu_signature(2)}")
    print(f"{args.out}: {len(table)} rows")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
