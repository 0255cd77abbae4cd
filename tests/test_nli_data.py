"""The finetune notebook's NLI set: reproducible from its generator, balanced, and free of one-word shortcuts."""
from __future__ import annotations

import collections
import re
import sys

import pytest

from autograder import build

sys.path.insert(0, str(build.SOURCE / "finetune"))
import nli_data  # noqa: E402  (lives beside the notebook that imports it)

pytestmark = pytest.mark.finetune


def test_the_committed_file_is_what_the_generator_writes():
    path = build.SOURCE / "finetune" / f"{nli_data.VERSION}.jsonl"
    assert path.read_bytes() == nli_data.render(nli_data.generate())
    assert {split: len(rows) for split, rows in nli_data.load().items()} == {"train": 630, "validation": 135,
                                                                             "test": 135}


def test_every_split_holds_each_label_equally():
    for split, rows in nli_data.load().items():
        counts = collections.Counter(row["label"] for row in rows)
        assert len(set(counts.values())) == 1 and set(counts) == set(nli_data.LABELS), (split, counts)


@pytest.mark.parametrize("side", ["premise", "hypothesis"])
def test_no_frequent_word_gives_the_label_away(side):
    labels_of = collections.defaultdict(collections.Counter)
    for rows in nli_data.load().values():
        for row in rows:
            for word in set(re.findall(r"[a-z]+", row[side].lower())):
                labels_of[word][row["label"]] += 1
    skewed = {word: dict(counts) for word, counts in labels_of.items()
              if sum(counts.values()) >= 20 and max(counts.values()) > 0.7 * sum(counts.values())}
    assert not skewed, f"words in the {side} that predict the label: {skewed}"


def test_a_tampered_file_is_refused_with_the_way_to_fix_it(tmp_path):
    path = build.SOURCE / "finetune" / f"{nli_data.VERSION}.jsonl"
    (tmp_path / path.name).write_bytes(path.read_bytes().replace(b"entailment", b"neutral", 1))
    with pytest.raises(ValueError, match="regenerate it"):
        nli_data.load(tmp_path)
