"""A small natural-language-inference dataset, generated from templates (in the spirit of SNLI and MNLI).

Each example pairs a premise with a hypothesis labelled entailment (the premise makes it true),
neutral (it might be true) or contradiction (the premise makes it false). As in SNLI, both
sentences describe the same scene: "a chef is sleeping" contradicts "a chef is cooking", while
another person ("a nurse is sleeping") may be in the scene unmentioned, so that is neutral.

Version 2 removes the lexical shortcuts of version 1, where single words ("Nobody", "with a
friend") gave the label away. Here the label depends on how the two sentences line up:

- every entailment that generalises the premise ("a chef" -> "a person", "cooking pasta" ->
  "cooking", "in a kitchen" -> "indoors", dropping a detail) has a neutral twin with the two
  sentences swapped, so the same words appear under both labels;
- "Nobody" appears under all three labels, and under negation generalising flips direction
  ("nobody is cooking" entails "nobody is cooking pasta");
- contradictions (same person, another action or place; "nobody" against "somebody") use the same
  vocabulary as the neutral pairs that involve another person or another action;
- general words also appear in the hypotheses of neutral pairs and contradictions, so that the
  hypothesis alone (MNLI's best-known shortcut) gives little away: no word that occurs in 20 or more
  hypotheses has more than 70% of them under one label.

Pure Python, deterministic: `VERSION` names the generator and `SHA256` the exact bytes of
`nli_v2.jsonl`. Run `python nli_data.py` to regenerate the file.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

VERSION = "nli_v2"
SHA256 = "4066cb44a274b0d8e88a63c7ab728d54e2cc04b18b25c3bf7d5704ea1dc1c8f4"
LABELS = ("entailment", "neutral", "contradiction")

# (precise, general): each general term covers its precise one.
SUBJECTS = [("a chef", "a person"), ("a nurse", "someone"), ("a firefighter", "a worker"), ("a farmer", "a worker"),
            ("a little girl", "a child"), ("a small boy", "a child"), ("an old man", "a man"),
            ("a young woman", "a woman"), ("a tourist", "a visitor"), ("a teenager", "a young person")]
# (precise, general): no two rows can be done at once, and each general term belongs to one row.
ACTIONS = [("cooking pasta", "cooking"), ("playing the guitar", "playing music"), ("sleeping on a mat", "sleeping"),
           ("painting a fence", "painting"), ("reading a newspaper", "reading"), ("dancing a waltz", "dancing"),
           ("eating an apple", "eating"), ("washing a dog", "caring for an animal"),
           ("juggling three oranges", "juggling"), ("knitting a scarf", "knitting")]
# (precise, general): one is in one place at a time; "indoors" and "outdoors" exclude each other.
PLACES = [("in a kitchen", "indoors"), ("in a garage", "indoors"), ("in a living room", "indoors"),
          ("in a school gym", "indoors"), ("in a park", "outdoors"), ("on a beach", "outdoors"),
          ("in a garden", "outdoors"), ("on a busy street", "outdoors")]
DETAILS = ["with a friend", "in the morning", "for the first time", "while wearing a red hat"]


@dataclass(frozen=True)
class Scene:
    """Somebody (or, with `nobody`, no one) doing one action in one place; `general` holds the slots said
    in general terms."""

    subject: int
    action: int
    place: int
    general: frozenset = frozenset()
    detail: int | None = None
    nobody: bool = False

    def word(self, table: list, slot: str) -> str:
        return table[getattr(self, slot)][slot in self.general]

    def sentence(self) -> str:
        action, place = self.word(ACTIONS, "action"), self.word(PLACES, "place")
        if self.nobody:
            return f"Nobody is {action} {place}."
        subject = self.word(SUBJECTS, "subject")
        detail = "" if self.detail is None else " " + DETAILS[self.detail]
        return f"{subject[0].upper()}{subject[1:]} is {action} {place}{detail}."


def _other(rng: random.Random, count: int, taken: int) -> int:
    return rng.choice([i for i in range(count) if i != taken])


def _random_scene(rng: random.Random) -> Scene:
    return Scene(rng.randrange(len(SUBJECTS)), rng.randrange(len(ACTIONS)), rng.randrange(len(PLACES)),
                 detail=rng.randrange(len(DETAILS)) if rng.random() < 0.4 else None)


def _specific_and_general(rng: random.Random, nobody: bool) -> tuple[Scene, Scene]:
    """A scene said precisely and the same scene with at least one slot (or its detail) said more generally:
    the first entails the second — unless `nobody`, where the second (fewer things ruled out) entails the first."""
    scene = replace(_random_scene(rng), nobody=nobody)
    slots = ["action", "place"] + ([] if nobody else ["subject"])
    if nobody:
        scene = replace(scene, detail=None)
    options = slots + (["detail"] if scene.detail is not None else [])
    chosen = [slot for slot in options if rng.random() < (0.25 if slot == "subject" else 0.4)] or [rng.choice(options)]
    general = replace(scene, general=frozenset(s for s in chosen if s != "detail"),
                      detail=None if "detail" in chosen else scene.detail)
    # Either sentence may also say some *other* slot generally, as long as both do.
    shared = frozenset(s for s in slots if s not in chosen and rng.random() < 0.25)
    return replace(scene, general=shared), replace(general, general=general.general | shared)


def _incompatible_place(rng: random.Random, scene: Scene) -> Scene:
    """The same scene somewhere it cannot also be: another precise place, or the other side of indoors/outdoors."""
    side = PLACES[scene.place][1]
    if "place" in scene.general or rng.random() < 0.3:
        said = scene.general | {"place"} if rng.random() < 0.5 else scene.general - {"place"}
        return replace(scene, place=rng.choice([i for i, p in enumerate(PLACES) if p[1] != side]), general=said)
    return replace(scene, place=_other(rng, len(PLACES), scene.place), general=scene.general - {"place"})


def _some_general(rng: random.Random, slots: tuple[str, ...], chance: float) -> frozenset:
    return frozenset(slot for slot in slots if rng.random() < chance)


def _pair(rng: random.Random, label: str) -> tuple[Scene, Scene]:
    """A (premise, hypothesis) pair with `label`. General words ("a worker", "cooking", "indoors") appear in the
    hypotheses of every label, so that the hypothesis alone gives little away."""
    kind = rng.random()
    if label == "entailment":
        specific, general = _specific_and_general(rng, nobody=kind < 0.3)
        return (general, specific) if specific.nobody else (specific, general)
    if label == "neutral":
        if kind < 0.4:  # an entailment read backwards
            specific, general = _specific_and_general(rng, nobody=kind < 0.15)
            return (specific, general) if specific.nobody else (general, specific)
        premise = _random_scene(rng)
        if kind < 0.7:  # another person, maybe doing something else, maybe with a detail
            other = replace(_random_scene(rng), subject=_other(rng, len(SUBJECTS), premise.subject), place=premise.place,
                            general=_some_general(rng, ("action", "place"), 0.3))
            return premise, other
        # whether anybody does one thing says nothing about whether somebody does another thing there
        nobody = replace(premise, action=_other(rng, len(ACTIONS), premise.action), nobody=True, detail=None,
                         general=_some_general(rng, ("action",), 0.3))
        somebody = replace(premise, general=_some_general(rng, ("subject", "action", "place"), 0.5))
        return (somebody, nobody) if kind < 0.8 else (nobody, somebody)
    premise = _random_scene(rng)
    if kind < 0.3:  # the same person doing something else
        return premise, replace(premise, action=_other(rng, len(ACTIONS), premise.action),
                                detail=premise.detail if rng.random() < 0.5 else None,
                                general=_some_general(rng, ("action", "place"), 0.3))
    if kind < 0.55:  # the same person somewhere else
        moved = _incompatible_place(rng, replace(premise, detail=None))
        return premise, replace(moved, general=moved.general | _some_general(rng, ("action",), 0.3))
    # "nobody" against somebody doing it (said precisely or generally), in either order
    nobody = replace(premise, nobody=True, detail=None, general=_some_general(rng, ("action", "place"), 0.3))
    if kind < 0.7:
        return premise, nobody
    return nobody, replace(premise, general=_some_general(rng, ("subject", "action", "place"), 0.5))


def generate(per_label: int = 300, seed: int = 182) -> list[dict]:
    """`per_label` distinct pairs of each label, each with its split (70% train, 15% validation, 15% test), shuffled."""
    rng = random.Random(seed)
    examples, seen = [], set()
    for label in LABELS:
        count = 0
        while count < per_label:
            premise, hypothesis = (scene.sentence() for scene in _pair(rng, label))
            if premise != hypothesis and (premise, hypothesis) not in seen:
                seen.add((premise, hypothesis))
                examples.append({"premise": premise, "hypothesis": hypothesis, "label": label})
                count += 1
    for index, example in enumerate(examples):  # the same share of every label in every split
        share = index % per_label / per_label
        example["split"] = "train" if share < 0.7 else "validation" if share < 0.85 else "test"
    rng.shuffle(examples)
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
