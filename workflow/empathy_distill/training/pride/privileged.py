"""The privileged teacher prompt and the proof that no privileged field reaches the student.

Privileged information (PRIDE: known at training time only) is, in the Welivita & Pu (2024)
dataset, a dialogue's ``emotion`` (32 EmpatheticDialogues classes), its ``plutchik`` category, its
``sentiment`` and the crowd rating of the human listener's response (``rating_human``, 1-3). The
teacher sees them laid out as the empathy-reasoning steps (understand the speaker's feelings,
analyse the situation, then respond); the student gets exactly the user turn of the SFT set
(``Prompts.student_train``, the prompt every other student trains and answers with). The
companion scoring study's annotations of the dialogue's responses (MITI codes, gpt-4o-mini's
subfactor scores; :mod:`.study_fields` joins them into the row) are privileged fields too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from ...core.errors import DatasetError

#: Dataset columns the teacher may see and the student never does.
PRIVILEGED_FIELDS = ("emotion", "plutchik", "sentiment", "rating_human")
#: The scoring study's fields (:mod:`.study_fields`): MITI codes, gpt-4o-mini subfactor scores.
STUDY_FIELDS = ("miti", "subfactors")
#: Row key of a dialogue's study annotations: ((response label, {study field: text}), ...).
STUDY_KEY = "study_annotations"
#: First line of the privileged block: its presence in a student input is a leak by itself.
MARKER = "Privileged notes (training only)"
#: Shortest sentence of the teacher's reasoning that counts as leaked on its own.
MIN_PIECE = 24


def study_notes(row: Mapping[str, object], field: str) -> list[tuple[str, str]]:
    """(response label, text) of study ``field`` for each annotated response of ``row``."""
    notes = row.get(STUDY_KEY) or ()
    return [(label, texts[field]) for label, texts in notes if field in texts]  # type: ignore[attr-defined]


def field_value(row: Mapping[str, object], field: str) -> str:
    """``row``'s value of a privileged field as the teacher reads it ("" when it has none)."""
    if field in STUDY_FIELDS:
        return "\n".join(f"{label}, {text}" for label, text in study_notes(row, field))
    return str(row.get(field, "")).strip()


def constant_fields(
    rows: Iterable[Mapping[str, object]], fields: Sequence[str] = PRIVILEGED_FIELDS
) -> dict[str, str]:
    """Privileged ``fields`` with one value over ``rows`` (a training set's dialogues): field ->
    that value. Such a field tells the teacher nothing about any one example (``rating_human``
    is 3 in every SFT set that keeps only human-rated-3 dialogues), so PRIDE leaves it out."""
    values: dict[str, set[str]] = {field: set() for field in fields}
    count = 0
    for row in rows:
        count += 1
        for field in fields:
            values[field].add(field_value(row, field))
    if count < 2:
        return {}
    return {field: next(iter(seen)) for field, seen in values.items() if len(seen) == 1}


def privileged_block(
    row: Mapping[str, object],
    reasoning: str | None = None,
    fields: Sequence[str] = PRIVILEGED_FIELDS,
) -> str:
    """The empathy-reasoning steps filled with the privileged ``fields`` of ``row``.

    ``reasoning``: the teacher's own reasoning about the dialogue (``training.pride.reasoning``,
    :mod:`.reasoning`), added as the analysis step. ``fields``: the privileged fields that vary
    in the training set (:func:`constant_fields` names the others); the study's fields add one
    line per annotated response.
    """
    missing = [f for f in fields if field_value(row, f) == ""]
    if missing:
        raise DatasetError(
            f"dialogue {row.get('dialog_id', '?')}: privileged field(s) {', '.join(missing)} "
            f"empty or missing (PRIDE's teacher needs {', '.join(fields)})"
        )
    labels = [
        f"{name} {row[field]}"
        for field, name in (("plutchik", "Plutchik:"), ("sentiment", "sentiment:"))
        if field in fields
    ]
    feeling = f"they feel {row['emotion']}" if "emotion" in fields else "how they feel"
    lines = [
        f"{MARKER}: think through these steps before you respond.",
        f"Step 1, the speaker's feelings: {feeling}"
        + (f" ({'; '.join(labels)})." if labels else "."),
        "Step 2, the situation: what happened to them and what they need from a listener.",
    ]
    if reasoning:
        lines.append(f"Analysis: {reasoning.strip()}")
    shown = [f for f in STUDY_FIELDS if f in fields]
    if shown:
        lines.append("Expert annotations of listener replies to this speaker (scoring study):")
        for label, texts in row.get(STUDY_KEY) or ():  # type: ignore[attr-defined]
            parts = [texts[f] for f in shown if f in texts]
            if parts:
                lines.append(f"- {label}, {'; '.join(parts)}")
    rating = (
        f"a human listener's reply to this was rated {row['rating_human']} of 3 for empathy; "
        if "rating_human" in fields
        else ""
    )
    lines.append(f"Step 3, respond: {rating}give only your reply.")
    return "\n".join(lines)


def teacher_prompt(
    student_prompt: str,
    row: Mapping[str, object],
    reasoning: str | None = None,
    fields: Sequence[str] = PRIVILEGED_FIELDS,
) -> str:
    """The teacher's user turn: the privileged steps, then the student's own prompt unchanged."""
    return f"{privileged_block(row, reasoning, fields)}\n\n{student_prompt}"


def reasoning_pieces(reasoning: str) -> list[str]:
    """The parts of a reasoning text whose presence in a student input is a leak: the whole
    text and each of its sentences or lines of at least :data:`MIN_PIECE` characters (a leaked
    sentence is a leak too; shorter ones, "They are sad.", may occur by chance)."""
    text = " ".join(reasoning.split())
    pieces = [text] if text else []
    for line in reasoning.splitlines():
        for sentence in re.split(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+", line.strip()):
            sentence = " ".join(sentence.split())
            if len(sentence) >= MIN_PIECE and sentence not in pieces:
                pieces.append(sentence)
    return pieces


def privileged_leaks(
    student_text: str,
    row: Mapping[str, object],
    public_prompt: str,
    reasoning: str | None = None,
) -> list[str]:
    """What of ``row``'s privileged information ``student_text`` holds beyond ``public_prompt``.

    ``public_prompt`` is the student prompt built from the public fields only (situation,
    utterance). A label word may occur there by chance ("sad" in a situation, "positive" in the
    paper's prompt), so a value counts as leaked when it occurs more often in the student's text
    than in that prompt; the privileged block's marker counts wherever it occurs. ``reasoning``
    (the teacher's own, when PRIDE uses it): the text or any sentence of it
    (:func:`reasoning_pieces`) counts as leaked on the same terms (a sentence that quotes the
    speaker occurs in the public prompt too, so it does not).
    """
    leaks = [MARKER] if MARKER in student_text else []
    text, public = student_text.lower(), public_prompt.lower()
    for field in PRIVILEGED_FIELDS:
        value = str(row.get(field, "")).strip().lower()
        if value and text.count(value) > public.count(value):
            leaks.append(f"{field}={value}")
    for field in STUDY_FIELDS:
        for _, note in study_notes(row, field):
            if text.count(note.lower()) > public.count(note.lower()):
                leaks.append(f"{field}={note[:40]!r}")
    if reasoning:
        flat, flat_public = " ".join(text.split()), " ".join(public.split())
        for piece in reasoning_pieces(reasoning):
            piece = piece.lower()
            if flat.count(piece) > flat_public.count(piece):
                leaks.append(f"reasoning={piece[:40]!r}")
                break
    return leaks


def check_student_input(
    student_text: str,
    row: Mapping[str, object],
    public_prompt: str,
    reasoning: str | None = None,
) -> None:
    """Raise when the student's input holds privileged information (a bug, never data)."""
    leaks = privileged_leaks(student_text, row, public_prompt, reasoning)
    if leaks:
        raise AssertionError(
            f"dialogue {row.get('dialog_id', '?')}: the PRIDE student's input holds privileged "
            f"information ({', '.join(leaks)}); it must get the plain student prompt"
        )
