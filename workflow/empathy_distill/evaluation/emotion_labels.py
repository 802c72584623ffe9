"""The emotion question every student is asked: the 32 labels and the prompt that lists them.

The labels are EmpatheticDialogues' 32 emotions (Rashkin et al. 2019), the values of the
dataset's ``emotion`` column (the dataset is a subset of EmpatheticDialogues). They live here,
with no imports, so that the job spec (``specs.emotion_answers``) and the scoring job agree on
them and a change of either reruns the jobs. docs/emotion-accuracy.md.
"""

from __future__ import annotations

#: EmpatheticDialogues' 32 emotion labels, alphabetical (the order of the prompt's list).
EMOTIONS: tuple[str, ...] = (
    "afraid",
    "angry",
    "annoyed",
    "anticipating",
    "anxious",
    "apprehensive",
    "ashamed",
    "caring",
    "confident",
    "content",
    "devastated",
    "disappointed",
    "disgusted",
    "embarrassed",
    "excited",
    "faithful",
    "furious",
    "grateful",
    "guilty",
    "hopeful",
    "impressed",
    "jealous",
    "joyful",
    "lonely",
    "nostalgic",
    "prepared",
    "proud",
    "sad",
    "sentimental",
    "surprised",
    "terrified",
    "trusting",
)

#: The question, instruction and list first so that every dialogue's prompt shares that prefix
#: (its keys and values are computed once per job).
QUESTION = (
    "Which one word from this list best names how the speaker feels? {labels}.\n"
    "Context: {situation}\n"
    "Speaker Utterance: {speaker_uttr}\n"
)
#: Fine-tuned students: the question is the user turn, the label the whole assistant turn.
CHAT_SUFFIX = "Answer with the one word only."
#: Base students: raw text; the label follows " " and ends with a newline.
BASE_SUFFIX = "Emotion:"


def question(situation: str, speaker_uttr: str, labels: tuple[str, ...] = EMOTIONS) -> str:
    """The question about one test dialogue, listing every candidate label."""
    return QUESTION.format(labels=", ".join(labels), situation=situation, speaker_uttr=speaker_uttr)
