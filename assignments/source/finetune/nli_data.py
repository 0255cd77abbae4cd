"""A small natural-language-inference dataset, generated from templates (in the spirit of MNLI).

Each example pairs a premise with a hypothesis labelled entailment (the premise makes it true),
neutral (it might be true) or contradiction (the premise makes it false). Everything is
deterministic: `VERSION` names the generator and `SHA256` the exact bytes of `nli_v1.jsonl`.
Run `python nli_data.py` to regenerate the file.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

VERSION = "nli_v1"
SHA256 = "19f8b554b6659c02f3e2c511947613bbee9749abeaed37ca281494a0fdecc328"
LABELS = ("entailment", "neutral", "contradiction")

# (specific subject, a general description of it, pronoun)
SUBJECTS = [("A young woman", "A person", "she"), ("An old man", "A person", "he"), ("Two boys", "Some children", "they"),
            ("A chef", "Someone", "she"), ("A group of students", "Some people", "they"), ("A firefighter", "A worker", "he"),
            ("A little girl", "A child", "she"), ("A tourist", "A visitor", "he"), ("Three friends", "Some people", "they"),
            ("A nurse", "Someone", "she"), ("A teenager", "A young person", "he"), ("A farmer", "A worker", "she")]
# (action, its generalisation, an incompatible action, an unverifiable detail)
ACTIONS = [("playing the guitar", "playing an instrument", "sleeping", "to earn some money"),
           ("reading a newspaper", "reading something", "swimming in a lake", "about the election"),
           ("riding a bicycle", "riding something", "sitting on a sofa", "to get to work on time"),
           ("cooking pasta", "preparing food", "running a marathon", "for a birthday dinner"),
           ("painting a fence", "painting something", "taking a nap", "because the old paint was peeling"),
           ("kicking a ball", "playing with a ball", "lying in bed", "during a championship game"),
           ("eating an apple", "eating fruit", "singing on a stage", "after a long walk"),
           ("writing a letter", "writing something", "climbing a mountain", "to an old friend"),
           ("washing a car", "cleaning a vehicle", "flying a plane", "before selling it"),
           ("walking a dog", "walking with an animal", "driving a truck", "in the early morning")]
# (place, its generalisation, an incompatible place)
PLACES = [("in a park", "outdoors", "inside a windowless office"), ("on a beach", "near the sea", "in a snowy forest"),
          ("in a kitchen", "indoors", "on a busy highway"), ("on a city street", "in a town", "on a desert island"),
          ("in a garden", "outside", "in an underground tunnel"), ("at a train station", "in a public place",
                                                                    "alone on a farm")]


def _is(subject: str) -> str:
    return "are" if subject.split()[0] in ("Two", "Three", "Some") or " of " in subject else "is"


def _example(rng: random.Random, label: str) -> dict:
    subject, general, _ = rng.choice(SUBJECTS)
    action, action_general, opposite, detail = rng.choice(ACTIONS)
    place, place_general, elsewhere = rng.choice(PLACES)
    premise = f"{subject} {_is(subject)} {action} {place}."
    kind = rng.randrange(3)
    if label == "entailment":
        hypothesis = [f"{general} {_is(general)} {action_general} {place_general}.",
                      f"{general} {_is(general)} {action} {place}.",
                      f"{subject} {_is(subject)} {action_general}."][kind]
    elif label == "contradiction":
        hypothesis = [f"{subject} {_is(subject)} {opposite} {place}.",
                      f"{subject} {_is(subject)} {action} {elsewhere}.",
                      f"Nobody is {action} {place}."][kind]
    else:
        hypothesis = [f"{subject} {_is(subject)} {action} {place} {detail}.",
                      f"{general} {_is(general)} {action_general} {detail}.",
                      f"{subject} {_is(subject)} {action} {place} with a friend."][kind]
    return {"premise": premise, "hypothesis": hypothesis, "label": label}


def generate(per_label: int = 300, seed: int = 182) -> list[dict]:
    """`per_label` distinct pairs of each label, shuffled, each with its split (70% train, 15% validation, 15% test)."""
    rng = random.Random(seed)
    examples, seen = [], set()
    for label in LABELS:
        count = 0
        while count < per_label:
            example = _example(rng, label)
            key = (example["premise"], example["hypothesis"])
            if key not in seen:
                seen.add(key)
                examples.append(example)
                count += 1
    rng.shuffle(examples)
    for index, example in enumerate(examples):
        share = index / len(examples)
        example["split"] = "train" if share < 0.7 else "validation" if share < 0.85 else "test"
    return examples


def render(examples: list[dict]) -> bytes:
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in examples).encode()


def load(folder: Path | str = Path(__file__).parent) -> dict[str, list[dict]]:
    """The splits of the committed file (regenerated if missing), after checking it is the published version."""
    path = Path(folder) / f"{VERSION}.jsonl"
    data = path.read_bytes() if path.exists() else render(generate())
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{path.name} is not {VERSION} (sha256 {digest}); regenerate it with `python nli_data.py`")
    rows = [json.loads(line) for line in data.decode().splitlines()]
    return {split: [r for r in rows if r["split"] == split] for split in ("train", "validation", "test")}


if __name__ == "__main__":
    data = render(generate())
    (Path(__file__).parent / f"{VERSION}.jsonl").write_bytes(data)
    print(hashlib.sha256(data).hexdigest())
