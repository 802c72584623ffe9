"""Write tests/data/synthetic_dataset.csv: 60 made-up dialogues in the real dataset's schema.

The real table (Welivita & Pu 2024, arXiv:2406.05063) has no licence and is never committed, so
most tests run on this stand-in: the same 32 columns in the same order, short plausible texts
written from the templates below, and ratings laid out so that the paper's split (test = fewer
than two responses rated 3) and every set type are non-empty: per LLM, direct SFT rows (human 3
and LLM 3), direct DPO rows (human 1-2 and LLM 3), rows only ``as_coded`` takes (human 2, LLM
below 3), improve_human SFT/DPO sources, and all three human ratings for the offline judge.

Deterministic (seeded); rerun ``python tests/data/make_synthetic_dataset.py`` after editing it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).with_name("synthetic_dataset.csv")
SEED = 20250708
N_DIALOGUES = 60
RESPONDERS = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
LLMS = RESPONDERS[1:]
COLUMNS = (
    ["part_no"]
    + [f"annotator_{r}" for r in RESPONDERS]
    + ["dialog_id", "emotion", "sentiment", "plutchik", "situation", "speaker_uttr"]
    + [f"response_{r}" for r in RESPONDERS]
    + [f"rating_{r}" for r in RESPONDERS]
    + [f"empathy_propensity_{r}" for r in RESPONDERS]
    + [f"empathy_arr_{r}" for r in RESPONDERS]
)
#: (emotion, sentiment, Plutchik category, situation, what the speaker says)
SITUATIONS = [
    (
        "lonely",
        "negative",
        "sadness",
        "my best friend moved to another city last month",
        "Since my best friend moved away, the evenings feel really empty.",
    ),
    (
        "proud",
        "positive",
        "joy",
        "my daughter finished her first marathon",
        "My daughter just ran her first marathon, I cried at the finish line!",
    ),
    (
        "anxious",
        "negative",
        "fear",
        "I have a job interview on Monday",
        "I have an interview on Monday and I can't stop thinking about it.",
    ),
    (
        "grateful",
        "positive",
        "trust",
        "a neighbour fixed my fence without being asked",
        "My neighbour fixed my broken fence while I was at work.",
    ),
    (
        "disappointed",
        "negative",
        "sadness",
        "the concert I waited months for was cancelled",
        "They cancelled the concert an hour before it started.",
    ),
    (
        "excited",
        "positive",
        "anticipation",
        "we are adopting a puppy this weekend",
        "We pick up our new puppy on Saturday, I can hardly wait.",
    ),
    (
        "embarrassed",
        "negative",
        "disgust",
        "I called my teacher 'mum' in front of the class",
        "I called my teacher mum in front of everyone today.",
    ),
    (
        "furious",
        "negative",
        "anger",
        "someone dented my car and drove off",
        "Someone hit my car in the parking lot and just left.",
    ),
    (
        "hopeful",
        "positive",
        "anticipation",
        "I applied for a scholarship",
        "I sent off my scholarship application, fingers crossed.",
    ),
    (
        "nostalgic",
        "positive",
        "joy",
        "I found old photos from my childhood home",
        "I found a box of photos from the house I grew up in.",
    ),
    (
        "afraid",
        "negative",
        "fear",
        "I heard strange noises in the house at night",
        "Last night I heard footsteps downstairs and I was home alone.",
    ),
    (
        "content",
        "positive",
        "joy",
        "I spent a quiet Sunday reading in the garden",
        "I spent the whole Sunday reading in the garden, it was perfect.",
    ),
]
#: Appended to the situation so that no two dialogues share a prompt (as in the real table).
WHEN = ["last week", "yesterday", "this morning", "a few days ago", "over the weekend"]
OPENERS = {
    "human": ["Oh wow.", "That's tough.", "Nice!", "Hmm,", "Really?"],
    "negative": [
        "I'm so sorry you're going through this.",
        "It's completely understandable to feel that way.",
        "That sounds really hard, and it's okay to be upset.",
    ],
    "positive": [
        "That sounds like a big moment for you!",
        "What a meaningful experience, thank you for sharing it.",
        "I'm really happy for you, that's wonderful news.",
    ],
}
FOLLOW_UPS = [
    "How are you feeling about it now?",
    "Do you have someone to talk to about it?",
    "What do you think you'll do next?",
    "It makes sense that this matters so much to you.",
    'As they say, "one step at a time" - and you are taking it.',
]


def ratings_for(i: int) -> dict[str, int]:
    """Ratings of dialogue ``i``: a fixed cycle of layouts, so every set type has rows."""
    layouts = [
        # train: human 3 and LLMs 3 -> direct SFT for every LLM, improve_human SFT
        (3, 3, 3, 3, 3),
        # train: human 2, LLMs 3 -> direct DPO for every LLM, improve_human DPO
        (2, 3, 3, 3, 3),
        # train: human 1, two LLMs 3 -> DPO for chatgpt and gemini only
        (1, 3, 2, 3, 1),
        # train: human 2, only llama and mixtral 3 -> as_coded takes it for chatgpt too
        (2, 2, 3, 1, 3),
        # train: human 3 and two LLMs 3 -> SFT for llama and mixtral
        (3, 2, 3, 2, 3),
        # test: one response rated 3
        (1, 3, 2, 2, 1),
        # train: human 3, chatgpt and gemini 3
        (3, 3, 1, 3, 2),
        # test: no response rated 3
        (2, 2, 1, 2, 2),
    ]
    return dict(zip(RESPONDERS, layouts[i % len(layouts)], strict=True))


def hex_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(24))


def response(rng: random.Random, responder: str, sentiment: str) -> str:
    if responder == "human":
        return f"{rng.choice(OPENERS['human'])} {rng.choice(FOLLOW_UPS)}"
    return (
        f"{rng.choice(OPENERS[sentiment])} Moments like this stay with us, "
        f"and your feelings make sense. {rng.choice(FOLLOW_UPS)}"
    )


def rows(rng: random.Random) -> list[dict[str, object]]:
    out = []
    for i in range(N_DIALOGUES):
        emotion, sentiment, plutchik, situation, utterance = SITUATIONS[i % len(SITUATIONS)]
        assert i // len(SITUATIONS) < len(WHEN), "add WHEN phrases for more dialogues"
        ratings = ratings_for(i)
        row: dict[str, object] = {"part_no": i // 20}
        row |= {f"annotator_{r}": hex_id(rng) for r in RESPONDERS}
        row |= {
            "dialog_id": f"hit:{9000 + i}_conv:{18000 + 2 * i}",
            "emotion": emotion,
            "sentiment": sentiment,
            "plutchik": plutchik,
            "situation": f"{situation[0].upper()}{situation[1:]}, {WHEN[i // len(SITUATIONS)]}.",
            "speaker_uttr": utterance,
        }
        row |= {f"response_{r}": response(rng, r, sentiment) for r in RESPONDERS}
        row |= {f"rating_{r}": ratings[r] for r in RESPONDERS}
        row |= {f"empathy_propensity_{r}": rng.randint(20, 60) for r in RESPONDERS}
        row |= {
            f"empathy_arr_{r}": str([rng.randint(-2, 2) for _ in range(16)]) for r in RESPONDERS
        }
        out.append(row)
    return out


def main() -> None:
    with open(OUT, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows(random.Random(SEED)))
    print(f"wrote {OUT} ({N_DIALOGUES} dialogues, {len(COLUMNS)} columns)")


if __name__ == "__main__":
    main()
