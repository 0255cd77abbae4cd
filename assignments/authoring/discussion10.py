# %% [markdown]
# # Discussion 10 — Transformers and pretraining
#
# Two questions on the Lecture 18 notes come first; then the worksheet's questions, under the worksheet's
# numbering.

# %% role="answer"
import math
import os

import matplotlib.pyplot as plt
import torch

from solutions.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from solutions.mae import insert_mask_tokens, random_masking
from solutions.positional import relative_position_bias, sinusoidal_encoding

FAST = os.environ.get("COURSE_FAST") == "1"
torch.manual_seed(0)

# %% [markdown]
# ## Lecture 18: from an RNN encoder–decoder to the transformer
#
# ### L18(a) — five steps
# The lecture builds the transformer in five steps from an RNN encoder–decoder, whose single state vector must
# carry everything the decoder will ever need about the input. What does each step add or remove, why can the
# decoder's RNN go, where does normalisation fit, and how is the result trained in parallel?

# %% [markdown] role="answer"
# 1. **Cross-attention in the decoder.** Let every decoder step look up the encoder states it needs (queries
#    from the decoder, keys and values from the encoder) instead of squeezing the input into one vector.
# 2. **Causal self-attention in the decoder.** Let every decoder step look back at the outputs produced so far,
#    through attention over them rather than only through the recurrent state.
# 3. **Remove the decoder's RNN.** With steps 1 and 2 the decoder already reaches everything it used the state
#    for — the input through cross-attention and its own past through causal self-attention — so the
#    recurrence is no longer needed ("attention is all you need"). What remains per position is attention plus
#    a per-position MLP, with residual connections.
# 4. **Self-attention in the encoder**, kept causal at first (conceptually, the encoder RNN read left to right),
#    which lets the encoder RNN go too.
# 5. **Remove causality in the encoder.** Causality was only an artefact of reading with an RNN; the encoder
#    sees the whole input, so each position may attend to later positions as well.
#
# Normalisation (layer norm) goes with the residual connections: after each residual addition in the original
# design, or — in most modern models — before each block ("pre-norm"); some models also normalise queries and
# keys. Training is parallel across positions: the decoder sees the whole target sequence at once, and a causal
# mask adds $-\infty$ to the scores of future positions, which the softmax turns into exact zeros.

# %% role="answer"
scores = torch.randn(4, 4)
masked = scores.masked_fill(~causal_mask(4), -math.inf)  # adding -inf where j > i
print("scores with -inf above the diagonal:\n", masked)
print("softmax: future positions get exactly zero weight\n", torch.softmax(masked, dim=-1))

# %% [markdown]
# ### L18(b) — transformer block wirings
# The lecture's figure wires attention, an MLP and residual connections into a block in four ways and calls
# (A), (C) and (D) feasible and (B) problematic: (A) attention, then the MLP, each inside its own residual
# connection; (B) attention followed by the MLP with a single residual connection around both; (D) attention and
# the MLP side by side on the same input, both outputs added to it. (The notes' text does not describe (C); we
# take it as the MLP first, then attention, each inside its own residual connection.) Why is (B) the odd one out?

# %% [markdown] role="answer"
# Write $\mathrm{attn}(x)_t = \sum_{s\le t} a_{ts} W_V x_s$ (causal, so the diagonal $s = t$ is allowed).
#
# - **(B) is the problem,** for the two reasons the notes give. *The MLP loses $x_t$:* its input at position $t$
#   is $\mathrm{attn}(x)_t$ alone, in which the token's own content appears only diluted — weighted by $a_{tt}$,
#   one term of an average that is often dominated by other positions — and not at all for a head that looks
#   elsewhere (the previous token, say). *One skip path for two blocks:* a single residual connection lets the
#   signal bypass attention and MLP together, and attention receives gradient only through the MLP, so the
#   pair can learn little.
# - **(A)** keeps a residual around each block: the MLP reads $x_t + \mathrm{attn}(x)_t$, so the token's own
#   content is intact, and each block adds its own correction to the stream.
# - **(C)** is (A) with the two blocks in the other order. Each still has its own residual connection and the
#   MLP reads $x_t$ itself; a stack of (C) blocks is a stack of (A) blocks shifted by half a block (one extra MLP
#   at the bottom, one fewer at the top).
# - **(D)** gives up the order inside one block — this block's MLP does not see this block's attention output —
#   but the next block's attention follows this block's MLP, so a stack of (D) blocks still alternates the two
#   and behaves much like (A); both branches read the same input and can run at the same time, which large
#   models exploit.
#
# The demonstration uses a head that attends only to the previous token and asks how the MLP's output at
# position $t$ depends on $x_t$: the gradient is exactly zero in (B) and not in (A), (C) or (D).

# %% role="answer"
torch.manual_seed(0)
dim, T, t = 8, 5, 3
mlp = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.GELU(), torch.nn.Linear(16, dim))
to_value = torch.nn.Linear(dim, dim)
previous_only = torch.zeros(T, T, dtype=torch.bool)  # (T, T): query i may attend to key i - 1 only,
previous_only[torch.arange(1, T), torch.arange(T - 1)] = True
previous_only[0, 0] = True  # and query 0, with no previous token, to itself


def attend(h: torch.Tensor) -> torch.Tensor:  # (1, T, dim) -> (1, T, dim): a previous-token head
    return scaled_dot_product_attention(h, h, to_value(h), attn_mask=previous_only)[0]


mlp_output = {  # what each wiring's MLP computes, as a function of the block's input
    "A: h = x + attn(x); h + mlp(h)": lambda x: mlp(x + attend(x)),
    "B: x + mlp(attn(x))": lambda x: mlp(attend(x)),
    "C: h = x + mlp(x); h + attn(h)": lambda x: mlp(x),
    "D: x + attn(x) + mlp(x)": lambda x: mlp(x),
}
x = torch.randn(1, T, dim, requires_grad=True)
for name, output in mlp_output.items():
    (grad,) = torch.autograd.grad(output(x)[0, t].sum(), x)
    print(f"{name:32s} |d mlp_out[{t}] / d x[{t}]| = {grad[0, t].norm():.4f}")

# %% [markdown]
# ## 1. Transformers and pretraining
#
# ### Q1(a)
# Why does a transformer need positional encodings? Give a task where word order matters.

# %% [markdown] role="answer"
# Self-attention without a mask is permutation-equivariant: permuting the input tokens permutes the outputs in
# the same way, and nothing else changes, because every score depends only on the two vectors compared. Without
# positional information such a transformer sees a bag of words. Order matters almost everywhere: "the dog bit
# the man" vs "the man bit the dog" (who did what), negation scope ("not good, but great"), translation, code.
# The demo shows the equivariance with the reference attention.
#
# A causal mask breaks the symmetry: position $t$ averages over exactly $t + 1$ tokens, so shuffling the input
# changes the outputs by more than a shuffle, and a causal transformer without positional encodings can infer
# some order (how many tokens precede it, for instance). That is weaker and harder to use than explicit
# positions, but it means "no positions" is not the same as "no order" for a decoder. The second demo checks it.

# %% role="answer"
torch.manual_seed(0)
mha = MultiHeadAttention(8, 2)
tokens = torch.randn(1, 6, 8)
order = torch.randperm(6)
with torch.no_grad():
    same = torch.allclose(mha(tokens, tokens, tokens)[0][:, order],
                          mha(tokens[:, order], tokens[:, order], tokens[:, order])[0], atol=1e-6)
print("no mask: shuffling the words only shuffles the outputs:", same)
with torch.no_grad():
    causal = mha(tokens, tokens, tokens, is_causal=True)[0][:, order]
    shuffled = mha(tokens[:, order], tokens[:, order], tokens[:, order], is_causal=True)[0]
print("causal mask: shuffling the words only shuffles the outputs:", torch.allclose(causal, shuffled, atol=1e-6))

# %% [markdown]
# ### Q1(b)
# With word embedding $x_i$ and position embedding $p_i$, compare adding ($z_i = x_i + p_i$) with
# concatenating ($z_i = [x_i, p_i]$) when queries and keys are simply $q = k = z$. What is the dot product
# between two positions in each case, and what follows?

# %% [markdown] role="answer"
# Adding: $z_i \cdot z_j = x_i\cdot x_j + x_i\cdot p_j + p_i\cdot x_j + p_i\cdot p_j$. Concatenating:
# $z_i\cdot z_j = x_i\cdot x_j + p_i\cdot p_j$. Concatenation keeps content and position apart: the score is a
# content similarity plus a position similarity, and no term mixes "what" with "where". Adding creates two
# cross terms, which make a word's score depend on where the *other* word sits and let positions interfere with
# content.
#
# The cross terms are not small. In high dimension random vectors are *nearly orthogonal* only relative to
# their lengths: $x_i\cdot p_j$ is a sum of $d$ products, of the same order as $x_i\cdot x_j$ between two
# different tokens (the first demo measures both). Adding works anyway for other reasons. It keeps the width
# (and the cost) unchanged. The model learns its embeddings and its $W_Q, W_K$: it can keep content and position
# in different subspaces of the $d$ dimensions, and then adding *is* concatenating (the second demo), or let
# $W_Q^\top W_K$ weigh the cross terms down. And the relative scale of embeddings and encodings sets how much
# position weighs against content (the original transformer multiplies its token embeddings by
# $\sqrt{d_{\text{model}}}$ before adding the encoding).

# %% role="answer"
torch.manual_seed(0)
x = torch.randn(10, 64)
p = sinusoidal_encoding(10, 64)
added = (x + p) @ (x + p).T
concatenated = torch.cat([x, p], 1) @ torch.cat([x, p], 1).T
cross = x @ p.T + p @ x.T
print("added - concatenated == cross terms:", torch.allclose(added - concatenated, cross, atol=1e-4))
different = ~torch.eye(10, dtype=torch.bool)  # pairs i != j: a token's score with itself is not the comparison
print(f"typical size for i != j: |x_i . x_j| {(x @ x.T)[different].abs().mean():.2f}, "
      f"|x_i . p_j| {(x @ p.T)[different].abs().mean():.2f}, |p_i . p_j| {(p @ p.T)[different].abs().mean():.2f}")

# Content in a 48-dimensional subspace, positions in the orthogonal 16 dimensions: the sum is a concatenation in
# disguise, and every cross term vanishes.
basis = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64)).Q  # (64, 64) orthonormal columns
content = torch.randn(10, 48, dtype=torch.float64) @ basis[:, :48].T  # (10, 64)
position = sinusoidal_encoding(10, 16, dtype=torch.float64) @ basis[:, 48:].T  # (10, 64)
print(f"separate subspaces: largest |cross term| {(content @ position.T).abs().max():.1e}")

# %% [markdown]
# ### Q1(c)
# Self-attention can be made to depend on relative positions without cross terms and without concatenating (and
# so lengthening) two kinds of embedding.
#
# ### Q1(c)(i)
# A relative position embedding adds a learned bias $\pi_{i-j}$ to the score of query $i$ and key $j$. Which
# bias reproduces attention with position embeddings $q_i^{(pos)}, k_j^{(pos)}$ concatenated to the queries and
# keys?

# %% [markdown] role="answer"
# Concatenation adds $q_i^{(pos)}\cdot k_j^{(pos)}$ to the content score $q_i\cdot k_j$, so the bias
# $\pi_{i,j} = q_i^{(pos)}\cdot k_j^{(pos)}$ gives the same scores, without lengthening the vectors and without
# cross terms. Mind the scale: attention on concatenated vectors of width $d + d_p$ divides *every* score by
# $\sqrt{d + d_p}$, not by $\sqrt{d}$, so the bias is $q_i^{(pos)}\cdot k_j^{(pos)}/\sqrt{d + d_p}$ and the content
# scores must be scaled by $1/\sqrt{d + d_p}$ too (or the bias rescaled to match $1/\sqrt{d}$). It is a
# *relative* bias $\pi_{i-j}$ exactly when that dot product depends only on $i - j$, as for sinusoidal position
# vectors with an even number of dimensions (with an odd number the last, unpaired sine column depends on $i$
# and $j$ themselves). The demo builds the bias table from sinusoids and checks that biased attention equals
# attention on concatenated vectors.

# %% role="answer"
T, d, dp = 6, 4, 8
torch.manual_seed(0)
q, k, v = torch.randn(T, d), torch.randn(T, d), torch.randn(T, 3)
pos = sinusoidal_encoding(T, dp, dtype=torch.float64).float()
offsets = torch.arange(-(T - 1), T)  # i - j from -(T-1) to T-1
table = torch.stack([(pos[max(o, 0)] @ pos[max(-o, 0)]) for o in offsets.tolist()])[None]  # (1, 2T-1)
bias = relative_position_bias(table, T, T)[0] / math.sqrt(d + dp)
# Concatenated vectors are scored with 1/sqrt(d + dp); rescale q so the content part is scored the same way.
with_bias, _ = scaled_dot_product_attention(q * math.sqrt(d) / math.sqrt(d + dp), k, v, attn_mask=bias)
concat, _ = scaled_dot_product_attention(torch.cat([q, pos], 1), torch.cat([k, pos], 1), v)
print("relative bias == concatenated sinusoidal positions:", torch.allclose(with_bias, concat, atol=1e-5))

# %% [markdown]
# ### Q1(c)(ii)
# With maximum context length $T$ and $m$ heads, how many extra parameters does a per-head bias that depends
# only on relative position need?

# %% [markdown] role="answer"
# Offsets $i - j$ range over $-(T-1), \dots, T-1$: $2T-1$ values, one learned bias each, per head: $(2T-1)\,m$
# parameters in total — independent of the model width and tiny next to the rest of the model (for $T=512$,
# $m=12$: 12,276). A causal decoder only ever scores keys $j \le i$, offsets $0, \dots, T-1$: it needs $T\,m$
# biases (6,144 here).

# %% role="answer"
T, m = 512, 12
table = torch.zeros(m, 2 * T - 1)
print("table entries:", table.numel(), "== (2T-1)m =", (2 * T - 1) * m,
      "; bias shape for a full sequence:", tuple(relative_position_bias(table, T, T).shape))
used = relative_position_bias(torch.arange(2 * T - 1.0).expand(m, -1), T, T)[:, causal_mask(T)]  # entries a causal decoder reads
print("distinct offsets a causal decoder uses per head:", used[0].unique().numel(), "-> T*m =", T * m)

# %% [markdown]
# ### Q1(d)
# What is the advantage of multi-head attention? Give examples of structure it can find.

# %% [markdown] role="answer"
# One attention operation gives each query one weighted average: it can follow one relation at a time, and a
# softmax that must serve several relations blurs them. With several heads, each in its own lower-dimensional
# subspace, the layer can follow several relations at once for about the same cost as one wide head. Heads are
# found to track the previous or next token, syntactic relations (a verb and its subject or object, a determiner
# and its noun), coreference (a pronoun and its antecedent), matching brackets or quotes, delimiters such as
# `[SEP]`, and rare or salient words. The demo hand-builds two heads: one attends to the previous token, the
# other to earlier occurrences of the same word.

# %% role="answer"
words = "the cat saw the dog and the cat ran".split()
vocab = sorted(set(words))
T = len(words)
one_hot = torch.eye(len(vocab))[[vocab.index(w) for w in words]]  # (T, V): word identity
position = torch.eye(T)  # (T, T): position identity
x = torch.cat([one_hot, position], 1)[None]  # (1, T, V + T)
big = 20.0
previous = torch.zeros(T, T)
previous[torch.arange(1, T), torch.arange(T - 1)] = big  # head 0: query i prefers key i-1
same_word = big * (one_hot @ one_hot.T) - big * torch.eye(T)  # head 1: query prefers the same word, not itself
allowed = causal_mask(T)
weights = [torch.softmax((s + 0.0).masked_fill(~allowed, -math.inf), -1) for s in (previous, same_word)]
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, w, title in zip(axes, weights, ["head 0: previous token", "head 1: same word earlier"]):
    ax.imshow(w, cmap="viridis")
    ax.set_xticks(range(T), words, rotation=90)
    ax.set_yticks(range(T), words)
    ax.set_title(title)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Q1(e)
# With *argmax* attention (each head attends to exactly one position, the best-scoring key), how large is the
# receptive field of a node at layer $n$ with one head? With two heads? With $k$ heads?

# %% [markdown] role="answer"
# Count the input positions whose value can reach a node. **Convention:** with the residual connection counted,
# a node also keeps its own position's information from the layer below.
#
# - With residuals: each head adds one new position per layer, so the set can grow to $(k+1)^n$ positions
#   after $n$ layers — 1 head: $2^n$; 2 heads: $3^n$; $k$ heads: $(k+1)^n$ (capped by the sequence length).
# - Without residuals (a node's value is only what its heads fetched): $k^n$ — 1 head: exactly $1$ position
#   (argmax attention just relays one value up the stack); 2 heads: $2^n$; $k$ heads: $k^n$.
#
# Soft attention has a receptive field of the whole sequence after one layer, but argmax attention shows how few
# paths information really needs, and why multiple heads matter. The simulation draws random argmax choices and
# counts reachable inputs, both ways.

# %% role="answer"
def receptive_field(layers: int, heads: int, length: int = 4096, residual: bool = True, seed: int = 0) -> int:
    """Inputs that reach position length // 2 at the top when every head of every layer picks one key."""
    generator = torch.Generator().manual_seed(seed)
    reach = {length // 2}
    for _ in range(layers):
        below = set(reach) if residual else set()
        for node in reach:
            below.update(torch.randint(0, length, (heads,), generator=generator).tolist())
        reach = below
    return len(reach)


for k in (1, 2, 3):
    sizes = [receptive_field(n, k) for n in range(1, 5)]
    plain = [receptive_field(n, k, residual=False) for n in range(1, 5)]
    print(f"k={k}: with residual {sizes} (bound (k+1)^n = {[(k + 1) ** n for n in range(1, 5)]}); "
          f"without {plain} (bound k^n = {[k ** n for n in range(1, 5)]})")

# %% [markdown]
# ### Q1(f)
# For an input of length $M$ and an output of length $N$ with hidden size $k$, what is the cost of (1) encoder
# self-attention, (2) cross-attention, (3) decoder self-attention?

# %% [markdown] role="answer"
# Each (query, key) pair costs a length-$k$ dot product for the score and a length-$k$ contribution to the
# weighted sum. (1) Encoder self-attention: $M\times M$ pairs, $O(M^2k)$. (2) Cross-attention: $N$ decoder
# queries against $M$ encoder keys, $O(MNk)$. (3) Decoder self-attention: $O(N^2k)$ (the causal mask halves
# the useful pairs, not the order). Measured below with the reference implementation (the median of several
# runs, after a warm-up): doubling $M$ multiplies (1) by about 4, (2) by about 2 and leaves (3) unchanged.

# %% role="answer"
import time


def seconds(lq: int, lk: int, dim: int = 64, repeats: int = 7) -> float:
    """Median wall time of one attention call with lq queries and lk keys (CPU tensors: no device sync needed)."""
    q, kv = torch.randn(8, lq, dim), torch.randn(8, lk, dim)
    scaled_dot_product_attention(q, kv, kv)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scaled_dot_product_attention(q, kv, kv)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


M, N = (512, 256) if FAST else (1024, 512)  # large enough that a call takes milliseconds, not microseconds
cases = {"encoder self": lambda m, n: (m, m), "cross": lambda m, n: (n, m), "decoder self": lambda m, n: (n, n)}
for name, shape in cases.items():
    (lq, lk), (lq2, lk2) = shape(M, N), shape(2 * M, N)
    ratio = seconds(lq2, lk2) / seconds(lq, lk)
    print(f"{name:13s} scores {lq} x {lk}; doubling M: {lq2 * lk2 / (lq * lk):.0f}x the scores, {ratio:.1f}x the time")

# %% [markdown]
# ### Q1(g)
# True or false: in a transformer masked autoencoder, masking a token usually replaces both its value and its
# positional encoding with a special mask token.

# %% [markdown] role="answer"
# **False.** Only the token's *content* is replaced (by a learned mask vector, or in the MAE encoder the token
# is dropped altogether); its positional encoding is kept. The model must know *where* the missing token is to
# predict it: if the position were replaced too, all mask tokens would be identical and indistinguishable. The
# demo puts mask tokens in with `insert_mask_tokens` and then adds position embeddings to every slot.

# %% role="answer"
patches = torch.randn(1, 8, 4)
kept, mask, ids_restore = random_masking(patches, 0.75)
mask_token = torch.zeros(1, 1, 4)
decoder_input = insert_mask_tokens(kept, mask_token, ids_restore) + sinusoidal_encoding(8, 4)
hidden = mask[0].bool()
print("removed slots:", hidden.nonzero().flatten().tolist())
print("removed slots now differ only by their positions; distinct rows:",
      len({tuple(r.tolist()) for r in decoder_input[0, hidden]}), "of", int(hidden.sum()))

# %% [markdown]
# ### Q1(h)
# One student wants to pretrain a language model on random text from novels; another says unlabelled text is
# useless. Who is right?

# %% [markdown] role="answer"
# The first student. Language-model pretraining is self-supervised: the labels are made from the text itself —
# the next token (GPT) or a masked token (BERT) — so every sentence of every novel supplies many training
# examples. Predicting words well forces the model to learn syntax, meaning and facts, which transfer to
# downstream tasks. The second student is right only that the text must be relevant and clean enough; being
# "arbitrary" is what makes it plentiful.

# %% [markdown]
# ### Q1(i)
# Would an encoder-only or an encoder–decoder model suit each task: summarising an article; classifying
# restaurant reviews by sentiment; finding useful pages for a web search; translating between languages?

# %% [markdown] role="answer"
# - **Summarisation:** encoder–decoder — the output is new text of a different length, generated token by token
#   while attending to the article.
# - **Sentiment classification:** encoder — one label per review, from a pooled representation.
# - **Search relevance / retrieval:** encoder — embed queries and pages (or score query–page pairs) and rank;
#   nothing is generated.
# - **Translation:** encoder–decoder — the original use of the transformer: read the source, generate the target.
