"""Example answers for the report: a few test dialogues with every answer set side by side.

For the first ``--dialogues`` test dialogues (the split's order, so the same dialogues in every
run): the context, the human response and its crowd rating, the teacher's answer (when the grid
compares against the teacher), the base student's and every trained model's answer, and each
judge's verdict on that answer in every comparison it appears in, from that answer's side
("win vs tiny base (vs_base)"). A reader sees what distillation changed without opening a JSONL
file.

Outputs ``results/tables/example_answers.csv`` (one row per dialogue and answer set) and an
HTML page of the same cells, escaped, for the Snakemake report. The rule hands the job every
file (``--test``, ``--answers``, ``--judgments``); the job names them from their paths.
"""

from __future__ import annotations

import argparse
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import pandas as pd

from ..core.grid import PAIR_SEPARATOR, comparison_kind
from . import judge_records
from .answer_sets import AnswerSet, human_set, read_answer_set, reading_order
from .judge import OPPONENT_FIRST, combine_orders
from .records import AnswersError, n_words, read_jsonl, read_split

BASE_COLUMNS = [
    "dialog_id",
    "situation",
    "speaker_uttr",
    "answer_by",
    "kind",
    "student",
    "method",
    "strategy",
    "stage",
    "answer",
    "words",
    "human_rating",
    "refusal",
]
VERDICT_PREFIX = "verdicts_"
VERDICT_SEPARATOR = "; "
_OUTCOME = {1: "win", 0: "tie", -1: "loss", None: "invalid"}


@dataclass(frozen=True)
class Judged:
    """One judgments file: a judge's per-dialogue outcomes for the model against the opponent."""

    judge: str
    kind: str  # the comparison (grid.COMPARISONS), when known
    model: str
    opponent: str
    #: dialog_id -> (outcome from the model's side, from the opponent's side): "win", ...
    verdicts: dict[str, tuple[str, str]]


def _verdict_texts(records: list[dict], path: str) -> dict[str, tuple[str, str]]:
    """dialog_id -> (outcome from the model's side, the same from the opponent's side).

    A file with only the paper's fixed order was judged ``paper_faithful`` (judge.py writes
    both orders otherwise): there an invalid verdict counts as a loss, and the text says so.
    """
    orders = {r.get("order") for r in records}
    paper_faithful = orders == {OPPONENT_FIRST}
    try:
        outcomes = combine_orders(records, paper_faithful)
    except (AnswersError, KeyError) as exc:
        raise AnswersError(f"{path}: {exc}") from exc
    texts = {}
    for o in outcomes:
        values = list(o.by_order.values())
        mine_note = theirs_note = ""
        if paper_faithful and values[0] is None:
            mine_note = " (invalid verdict, counted as a loss)"
            theirs_note = " (invalid verdict, counted as a win)"
        elif o.outcome == 0 and len(values) == 2 and 0 not in values:
            mine_note = theirs_note = " (flipped with the order)"
        mine = _OUTCOME[o.outcome] + mine_note
        theirs = _OUTCOME[None if o.outcome is None else -o.outcome] + theirs_note
        texts[o.dialog_id] = (mine, theirs)
    return texts


def read_judged(path: str | Path) -> Judged:
    """A judgments file (``judgments/<judge>/<model>__vs__<opponent>.jsonl``) and its verdicts."""
    pure = PurePath(path)
    pair = pure.with_suffix("").name.split(PAIR_SEPARATOR)
    try:
        if len(pair) != 2:
            raise ValueError
        model, opponent = pair
        kind = comparison_kind(model, opponent)
    except ValueError as exc:
        raise AnswersError(
            f"{path}: not a judgments file (expected <judge>/<model tag>{PAIR_SEPARATOR}"
            "<opponent tag>.jsonl)"
        ) from exc
    verdicts = _verdict_texts(read_jsonl(path), str(path))
    return Judged(pure.parent.name, kind, model, opponent, verdicts)


def verdict_cells(
    judgment_files: Sequence[str | Path], labels: dict[str, str]
) -> tuple[list[str], dict[tuple[str, str, str], list[str]]]:
    """(judges in input order, {(judge, answer tag, dialog_id): ["win vs tiny base (vs_base)"]})."""
    judges: list[str] = []
    cells: dict[tuple[str, str, str], list[str]] = {}
    for path in judgment_files:
        judged = read_judged(path)
        if judged.judge not in judges:
            judges.append(judged.judge)
        for dialog_id, (mine, theirs) in judged.verdicts.items():
            for tag, other, text in (
                (judged.model, judged.opponent, mine),
                (judged.opponent, judged.model, theirs),
            ):
                line = f"{text} vs {labels.get(other, other)} ({judged.kind})"
                cells.setdefault((judged.judge, tag, dialog_id), []).append(line)
    return judges, cells


def example_table(
    test: pd.DataFrame,
    test_path: str | Path,
    sets: Sequence[AnswerSet],
    judgment_files: Sequence[str | Path],
    n_dialogues: int,
) -> pd.DataFrame:
    """One row per (example dialogue, answer set): the answer, its length and its verdicts."""
    ordered = reading_order([human_set(test, test_path), *sets])
    labels = {s.tag: s.label for s in ordered}
    judges, cells = verdict_cells(judgment_files, labels)
    examples = test.head(n_dialogues)
    rows = []
    for dialogue in examples.itertuples(index=False):
        dialog_id = str(dialogue.dialog_id)
        for answer_set in ordered:
            text = answer_set.answer(dialog_id)
            record = answer_set.records[dialog_id]
            info = answer_set.info
            row = {
                "dialog_id": dialog_id,
                "situation": str(dialogue.situation),
                "speaker_uttr": str(dialogue.speaker_uttr),
                "answer_by": answer_set.label,
                "kind": info["kind"],
                "student": info.get("student", ""),
                "method": info.get("method", ""),
                "strategy": info.get("strategy", ""),
                "stage": info.get("stage", ""),
                "answer": text,
                "words": n_words(text),
                "human_rating": record.get("rating", ""),
                "refusal": record.get("refusal") or "",
            }
            for judge in judges:
                lines = cells.get((judge, answer_set.tag, dialog_id), [])
                row[VERDICT_PREFIX + judge] = VERDICT_SEPARATOR.join(lines)
            rows.append(row)
    return pd.DataFrame(rows, columns=BASE_COLUMNS + [VERDICT_PREFIX + j for j in judges])


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
section { margin-bottom: 2.5em; }
.context { background: #f4f4f4; padding: 0.6em 0.8em; white-space: pre-wrap; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.5em; vertical-align: top; text-align: left; }
td.answer { white-space: pre-wrap; max-width: 40em; }
td.num { text-align: right; }
tr.human td { background: #fbf7e9; }
tr.teacher td { background: #eef4fb; }
.note { color: #a33; font-style: italic; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _answer_cell(row: pd.Series) -> str:
    if row["refusal"]:
        return f'<span class="note">refused by the provider: {_e(row["refusal"])}</span>'
    if not row["answer"].strip():
        return '<span class="note">(empty answer)</span>'
    return _e(row["answer"])


def to_html(table: pd.DataFrame) -> str:
    """A self-contained page: one section per dialogue, one table row per answer set."""
    judges = [c[len(VERDICT_PREFIX) :] for c in table.columns if c.startswith(VERDICT_PREFIX)]
    headers = ["answer by", "answer", "words", "human rating"]
    head = "".join(f"<th>{_e(h)}</th>" for h in headers + [f"verdicts ({j})" for j in judges])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Example answers</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Example answers to test dialogues</h1>",
        "<p>Verdicts are from each answer's side, per judge and comparison: win / tie / loss "
        "against the named answer set (both orders judged; a verdict that flips with the order "
        "is a tie).</p>",
    ]
    for dialog_id, rows in table.groupby("dialog_id", sort=False):
        first = rows.iloc[0]
        parts.append(f"<section><h2>Dialogue {_e(dialog_id)}</h2>")
        parts.append(
            f'<p class="context"><b>Situation:</b> {_e(first["situation"])}\n'
            f"<b>Speaker:</b> {_e(first['speaker_uttr'])}</p>"
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for _, row in rows.iterrows():
            verdicts = "".join(
                "<td>"
                + "<br>".join(_e(v) for v in row[VERDICT_PREFIX + j].split(VERDICT_SEPARATOR) if v)
                + "</td>"
                for j in judges
            )
            parts.append(
                f'<tr class="{_e(row["kind"])}"><th>{_e(row["answer_by"])}</th>'
                f'<td class="answer">{_answer_cell(row)}</td>'
                f'<td class="num">{_e(row["words"])}</td>'
                f'<td class="num">{_e(row["human_rating"])}</td>{verdicts}</tr>'
            )
        parts.append("</tbody></table></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Example answers of every answer set.")
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--answers", nargs="*", default=[], help="answers JSONL files")
    parser.add_argument("--judgments", nargs="*", default=[], help="judgments JSONL files")
    parser.add_argument(
        "--judge-records",
        nargs="*",
        default=[],
        help="judge jobs' records (<judge>/<kind>.files.json): their files join --judgments",
    )
    parser.add_argument("--dialogues", type=int, required=True, help="first N test dialogues")
    parser.add_argument("--csv", required=True, help="results/tables/example_answers.csv")
    parser.add_argument("--html", required=True, help="results/tables/example_answers.html")
    args = parser.parse_args(argv)
    if args.dialogues < 1:
        parser.error(
            f"--dialogues {args.dialogues}: expected at least 1 (config report.example_dialogues)"
        )
    test = read_split(args.test)
    sets = [read_answer_set(path) for path in args.answers]
    judgments = [*args.judgments, *judge_records.judgment_files(args.judge_records)]
    table = example_table(test, args.test, sets, judgments, args.dialogues)
    for out in (args.csv, args.html):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    Path(args.html).write_text(to_html(table), encoding="utf-8")
    shown = table["dialog_id"].nunique()
    print(f"{args.csv}, {args.html}: {shown} dialogues x {len(sets) + 1} answer sets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
