# %% [markdown]
# # Attention: causal masks and multi-head attention
#
# In this assignment you build the core of every transformer layer from plain tensor operations:
#
# 1. `causal_mask` — which positions a token may look at when it must not see the future;
# 2. `scaled_dot_product_attention` — the weighted average that attention computes, with every kind of mask;
# 3. `MultiHeadAttention` — several attention operations side by side, each in its own subspace.
#
# These are the pieces behind Discussion 10 (positional information, multi-head attention, the cost of
# attention) and the Lecture 18 story of how a transformer grew out of an RNN encoder–decoder.
#
# **How you are graded.** After each task a *check cell* runs visible, property-based checks: it tries
# many small inputs and, if your code is wrong, prints the *smallest* input it found, what was expected,
# what you returned, and a hint. The autograder runs many more hidden checks against a reference solution
# and gives you the same kind of feedback. Your code only has to follow the contract in each task; how you
# write it is up to you. Written questions are graded by hand.

# %% role="selfcheck"

# %% role="setup"
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

device = "cuda" if torch.cuda.is_available() else "cpu"
FAST = os.environ.get("COURSE_FAST") == "1"  # shortens the experiments (used by CI)
torch.manual_seed(0)

# %% [markdown]
# ## One convention for masks
#
# A mask says which (query, key) pairs may interact. This course uses **one** convention everywhere:
# **`True` means "may attend"** (or, for padding, "this is a real token"), `False` means "masked out".
# It is the convention of `torch.nn.functional.scaled_dot_product_attention` and of Hugging Face's
# `attention_mask`. Be careful: `torch.nn.MultiheadAttention` uses the **opposite** convention for its
# boolean masks (`True` there means "do not attend"). Mixing the two up is one of the most common bugs in
# transformer code, and it fails silently: the shapes are all right, the numbers are all wrong.
#
# A mask can also be a floating tensor that is *added* to the attention scores: `0` leaves a score alone
# and `-inf` removes it. Any other dtype is an error.

# %% [markdown]
# ## Task 1 — `causal_mask`
#
# A language model that predicts the next token must not peek at it. During training we feed the whole
# sequence at once (so all positions are computed in parallel, as the Lecture 18 notes explain) and stop
# each position from seeing the future with a *causal mask*: query $i$ may attend to key $j$ exactly when
# $j \le i$. The diagonal is allowed — a token may look at itself.
#
# **Contract.** `causal_mask(seq_len, *, device=None)` returns a `torch.bool` tensor of shape
# `(seq_len, seq_len)` on `device`, `True` where $j \le i$.
#
# For `seq_len = 3`:
#
# ```
# [[ True, False, False],
#  [ True,  True, False],
#  [ True,  True,  True]]
# ```

# %% role="solution" name="causal_mask"

# %% role="check" name="causal_mask"
check("causal_mask", causal_mask)

# %% [markdown]
# ## Task 2 — `scaled_dot_product_attention`
#
# Attention is a soft dictionary look-up. Each query is compared with every key; the comparisons become
# weights through a softmax; the output is the weighted average of the values:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{E}} + M\right) V$$
#
# where $E$ is the size of each query and key vector and $M$ is the additive form of the mask
# (`0` where attending is allowed, $-\infty$ where it is not).
#
# *Why divide by $\sqrt{E}$?* If the entries of $q$ and $k$ are independent with zero mean and unit variance, $q\cdot k$
# has variance $E$. Without the scaling, scores grow with the vector size, the softmax saturates on a
# single key, and its gradient vanishes.
#
# *Why $-\infty$ and not $-10^9$?* Adding minus infinity (the Lecture 18 notes) makes $e^{-\infty} = 0$
# exactly, so a masked key gets weight exactly zero. A large finite number mostly works, but it breaks in the
# case below, and in half precision $-10^9$ is not even representable.
#
# **A query with no allowed key.** If every key is masked for some query (a fully padded row, say),
# the softmax of a row of $-\infty$ is $0/0$ = NaN, and NaN spreads through everything it touches. Our
# contract (the behaviour of PyTorch's own kernel since version 2.5): such a query gets **all-zero
# weights and an all-zero output**.
#
# **Contract.** `scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False)`
# - `q: (..., Lq, E)`, `k: (..., Lk, E)`, `v: (..., Lk, Ev)`; any number of leading batch dimensions;
#   `Lq` and `Lk` may differ.
# - `attn_mask`: `None`, a bool tensor (`True` = may attend) or a float tensor (added to the scores),
#   broadcastable to `(..., Lq, Lk)` — so a single `(Lq, Lk)` mask works for a whole batch.
#   Any other dtype raises `ValueError`.
# - `is_causal=True` also applies a causal mask aligned at the **top left**: key `j` is allowed for query `i`
#   iff `j <= i`, even when `Lq != Lk` (as PyTorch does). Given together, `attn_mask` and `is_causal`
#   both apply.
# - Returns `(output, weights)`: `output: (..., Lq, Ev)`, `weights: (..., Lq, Lk)` (the softmax
#   probabilities), in the dtype of `q`.
# - Leave the inputs as they are: never write into `q`, `k`, `v` or `attn_mask`.
# - Gradients must flow back to `q`, `k` and `v` through every query that has an allowed key (for a query
#   with none, only the zero forward values are graded).
#
# **Not allowed in this task:** `torch.nn.functional.scaled_dot_product_attention`, under any name: writing it is the exercise, and the grader notices the call and gives this task no points.

# %% role="solution" name="scaled_dot_product_attention"

# %% role="check" name="scaled_dot_product_attention"
check("scaled_dot_product_attention", scaled_dot_product_attention)

# %% [markdown]
# ### Look at it
#
# Four tokens attending causally: each row of the weight matrix is a probability distribution over
# the keys that query may see, and the upper triangle is exactly zero.

# %%
import matplotlib.pyplot as plt

q = torch.randn(4, 8)
k = torch.randn(4, 8)
v = torch.randn(4, 8)
out, weights = scaled_dot_product_attention(q, k, v, is_causal=True)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
axes[0].imshow(causal_mask(4), cmap="Greys")
axes[0].set_title("causal_mask(4): True = may attend")
axes[1].imshow(weights, cmap="viridis")
axes[1].set_title("attention weights (rows sum to 1)")
for ax in axes:
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
plt.tight_layout()
plt.show()
print("row sums:", weights.sum(-1))

# %% [markdown]
# ## Task 3 — `MultiHeadAttention`
#
# One attention operation produces one weighted average per query: it can only "look for" one kind of
# thing at a time. Multi-head attention runs $H$ attention operations in parallel, each on its own
# $E/H$-dimensional slice of learned projections, so different heads can track different structure — one
# head might attend to the previous token, another to the subject of the sentence (Discussion 10, Q1(d)).
# The heads' outputs are concatenated and mixed by a final linear layer. The total cost is about the same
# as one head of full width.
#
# **Contract.** `MultiHeadAttention(embed_dim, num_heads, bias=True)` is an `nn.Module` with four
# submodules named exactly `q_proj`, `k_proj`, `v_proj`, `out_proj`, each `nn.Linear(embed_dim, embed_dim,
# bias=bias)` (the grader loads the reference's weights into your module by these names). If `embed_dim`
# is not divisible by `num_heads`, raise `ValueError`.
#
# `forward(query, key, value, attn_mask=None, key_padding_mask=None, is_causal=False)`:
# - `query: (B, Lq, E)`, `key, value: (B, Lk, E)`. Self-attention is `mha(x, x, x)`; cross-attention
#   (a decoder reading the encoder) is `mha(y, x, x)`.
# - Head `h` uses features `[h*E/H, (h+1)*E/H)` of each projection: reshape `(B, L, E)` to
#   `(B, L, H, E/H)` and move the head axis forward to get `(B, H, L, E/H)`.
# - `attn_mask` broadcasts to `(B, H, Lq, Lk)` (an `(Lq, Lk)` mask works); `key_padding_mask: (B, Lk)` bool,
#   **True = real token**; every given mask and `is_causal` apply together.
# - Returns `(output, weights)`: `output: (B, Lq, E)` after `out_proj`, and `weights: (B, H, Lq, Lk)`,
#   one attention matrix **per head** (PyTorch averages them unless told otherwise; we do not), both in the
#   dtype of `query`.
# - A query whose keys are all padding gets all-zero weights in every head, as in
#   `scaled_dot_product_attention` (its output is then `out_proj` of zeros); only its forward values are graded.
#
# Use your `scaled_dot_product_attention`; it already handles the masks.
#
# **Not allowed in this task:** `torch.nn.MultiheadAttention` and `torch.nn.functional.multi_head_attention_forward`, under any name: building multi-head attention is the exercise, and the grader notices the call and gives this task no points.

# %% role="solution" name="MultiHeadAttention"

# %% role="check" name="MultiHeadAttention"
check("MultiHeadAttention", MultiHeadAttention)

# %% [markdown]
# ### Self-attention, cross-attention and padding
#
# The same module does both kinds of attention; only where the keys and values come from changes. The
# weight matrices show the shapes: a decoder sequence of 3 tokens reading an encoder sequence of 5 tokens
# gives one 3×5 matrix per head. In the third row (cross-attention with padding), the last two encoder tokens
# are padding: no query looks at them.

# %%
torch.manual_seed(0)
mha = MultiHeadAttention(embed_dim=16, num_heads=2).to(device)
x = torch.randn(1, 5, 16, device=device)   # encoder side: 5 tokens
y = torch.randn(1, 3, 16, device=device)   # decoder side: 3 tokens
real = torch.tensor([[True, True, True, False, False]], device=device)
with torch.no_grad():
    _, self_w = mha(x, x, x)
    _, cross_w = mha(y, x, x)
    _, padded_w = mha(y, x, x, key_padding_mask=real)
print("self-attention weights:", tuple(self_w.shape), " cross-attention weights:", tuple(cross_w.shape))
fig, axes = plt.subplots(3, 2, figsize=(7, 7))
for h in range(2):
    for row, (w, name) in enumerate([(self_w, "self"), (cross_w, "cross"), (padded_w, "cross + padding")]):
        axes[row, h].imshow(w[0, h].cpu(), vmin=0, vmax=1, cmap="viridis")
        axes[row, h].set_title(f"{name}, head {h}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The quadratic cost of attention
#
# Every query scores every key, so the score matrix of a length-$T$ sequence has $T^2$ entries: time and
# memory grow quadratically with the sequence length (Discussion 10, Q1(f)). Let us measure it. On a
# log–log plot a power law $t \propto T^p$ is a straight line of slope $p$.

# %%
def synchronize() -> None:
    """GPU kernels run asynchronously: wait for queued work before reading the clock."""
    if device == "cuda":
        torch.cuda.synchronize()


lengths = [128, 256, 512, 1024] if FAST else [128, 256, 512, 1024, 2048]
times = []
for length in lengths:
    qkv = torch.randn(3, 1, 4, length, 32, device=device)
    scaled_dot_product_attention(*qkv)  # warm-up
    runs = []
    for _ in range(3 if FAST else 7):
        synchronize()
        start = time.perf_counter()
        scaled_dot_product_attention(*qkv)
        synchronize()
        runs.append(time.perf_counter() - start)
    times.append(sorted(runs)[len(runs) // 2])  # the median resists a busy machine's outliers
slope = torch.linalg.lstsq(torch.stack([torch.log(torch.tensor(lengths, dtype=torch.float64)),
                                        torch.ones(len(lengths), dtype=torch.float64)], 1),
                           torch.log(torch.tensor(times, dtype=torch.float64))[:, None]).solution[0].item()
plt.loglog(lengths, times, "o-")
plt.xlabel("sequence length T")
plt.ylabel("seconds per call")
plt.title(f"attention time grows like T^{slope:.2f}")
plt.show()
print("time ratios between successive doublings of T:", [round(b / a, 1) for a, b in zip(times, times[1:])])
print(f"fitted slope {slope:.2f} (2 would be exactly quadratic; small sizes are dominated by overheads)")

# %% [markdown]
# ## Written questions
#
# **Q1.** For an input of $M$ tokens and an output of $N$ tokens with hidden size $k$, what is the cost
# of (1) encoder self-attention, (2) decoder–encoder cross-attention and (3) decoder self-attention? What
# does this mean for documents 10× longer? (Count only the attention operation, not the projections.)

# %% [markdown] role="written" name="attention_complexity" points="2"
# Each query takes a dot product of length $k$ with each key and then averages values of size $k$.
# (1) Encoder self-attention: $M$ queries × $M$ keys, $O(M^2 k)$. (2) Cross-attention: $N$ decoder queries
# × $M$ encoder keys, $O(MNk)$. (3) Decoder self-attention: $N \times N$, $O(N^2 k)$ (a causal mask removes
# about half of the pairs but not the order of growth). Memory for the score matrices grows the same way.
# Documents 10× longer ($M \to 10M$, the output length $N$ unchanged, as for a summary): encoder
# self-attention costs about **100×** as much, cross-attention **10×** (it is linear in $M$), and decoder
# self-attention **the same** (it never looks at the input). The encoder becomes the bottleneck, which is why
# long-context models need sparse, local or linear-time approximations there.

# %% [markdown]
# **Q2.** A student uses `torch.nn.MultiheadAttention` with `key_padding_mask=real`, where `real` is `True`
# for real tokens, as in this notebook. What happens, and how would you notice?

# %% [markdown] role="written" name="mask_conventions" points="2"
# `torch.nn.MultiheadAttention` reads boolean masks as "True = do not attend", so the mask is inverted:
# every query may attend only to the padding. For a sequence *without* padding — most sequences in a batch,
# and the longest always — `real` is all `True`, so *every* key is masked, each softmax row is $0/0$, and the
# module returns NaN for that sequence (some fused inference paths return zeros instead). The likely symptom is
# therefore a NaN loss on the first batch, and NaN weights right after the first update; padded sequences
# meanwhile attend only to their padding. Pass `~real` to that module (or use a float mask), and test with an
# input where the answer is known.

# %% [markdown]
# ## Summary
#
# You built causal masks, scaled dot-product attention that handles every mask form (including rows with
# nothing to attend to) and multi-head attention with per-head weights. You saw that one module serves
# both self- and cross-attention, and that attention's cost is quadratic in the sequence length.
