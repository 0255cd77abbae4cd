"""Code normalisation and fingerprints: what makes two solutions alike and what does not."""
from __future__ import annotations

from autograder.similarity import Code, fingerprints, normalise, similar_pairs

ORIGINAL = '''
def attention(q, k, v):
    """Scaled dot-product attention."""
    # scores first
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    weights = scores.softmax(-1)   # rows sum to one
    return weights @ v, weights
'''
RENAMED = '''
def attention(query, key, value):
    # attention, as in the lecture
    s = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5

    p = s.softmax(-1)
    return p @ value, p
'''
DIFFERENT = '''
def attention(q, k, v):
    logits = torch.einsum("bqe,bke->bqk", q, k) * q.size(-1) ** -0.5
    probs = torch.exp(logits - logits.amax(-1, keepdim=True))
    probs = probs / probs.sum(-1, keepdim=True)
    return torch.einsum("bqk,bkv->bqv", probs, v), probs
'''


def code(student: str, source: str, starter: set[int] = frozenset()) -> Code:
    tokens = normalise(source)
    return Code(student, (("attention", source),), tuple(tokens), frozenset(fingerprints(tokens) - starter))


def test_names_comments_docstrings_and_layout_do_not_count():
    assert normalise(ORIGINAL) == normalise(RENAMED)


def test_attribute_names_and_structure_do_count():
    assert normalise(ORIGINAL) != normalise(DIFFERENT)
    assert normalise("x.softmax(-1)") != normalise("x.log_softmax(-1)")


def test_code_that_does_not_parse_is_compared_as_far_as_it_goes():
    assert normalise("y = f(x,\n  z = 1") == ["V", "=", "V", "(", "V", ",", "V", "=", "1"]


def test_a_renamed_copy_pairs_and_a_different_solution_does_not():
    pairs = similar_pairs([code("a", ORIGINAL), code("b", RENAMED), code("c", DIFFERENT)], threshold=0.5)
    assert [(p.a.student, p.b.student, p.identical) for p in pairs] == [("a", "b", True)]


def test_starter_code_makes_no_one_alike():
    starter = fingerprints(normalise(ORIGINAL))
    pairs = similar_pairs([code("a", ORIGINAL, starter), code("b", RENAMED, starter)], threshold=0.0)
    assert pairs == [], "two students who only kept the starter code have nothing of their own to compare"
