# %% [markdown]
# # Positional encodings
#
# Attention treats its input as a *set*: shuffle the tokens and every output is shuffled the same way,
# nothing else changes. Yet "dog bites man" and "man bites dog" mean different things. Positional
# encodings put word order back in. In this assignment you implement three ways of doing it:
#
# 1. `sinusoidal_encoding` — fixed sines and cosines at many frequencies, added to the token embeddings
#    (Discussion 10, Q1(a)–(b));
# 2. `relative_position_bias` — a learned bias per head for each *offset* between query and key, added to
#    the attention scores (Discussion 10, Q1(c));
# 3. `apply_rotary` (an extra) — rotary embeddings, which rotate queries and keys so their dot product
#    only sees the offset.
#
# **How you are graded.** After each task a check cell runs visible, property-based checks and prints the
# smallest input on which your code is wrong, if there is one. The autograder runs many more hidden checks
# against a reference solution and reports the same way. Written questions are graded by hand.

# %% role="selfcheck"

# %% role="setup"
import math
import os

import torch
from torch import Tensor

device = "cuda" if torch.cuda.is_available() else "cpu"
FAST = os.environ.get("COURSE_FAST") == "1"

# %% [markdown]
# ## Task 1 — `sinusoidal_encoding`
#
# Think of the hands of a clock: the second hand turns fast, the hour hand slowly, and together they pin
# down the time. A sinusoidal encoding gives position $p$ a vector of sines and cosines at geometrically
# spaced frequencies:
#
# $$PE[p, 2i] = \sin\!\left(\frac{p}{\text{base}^{2i/d}}\right), \qquad
#   PE[p, 2i+1] = \cos\!\left(\frac{p}{\text{base}^{2i/d}}\right).$$
#
# Columns come in pairs that share one frequency: the sine in the even column, the cosine in the odd one
# (*interleaved*). Because $\sin$ and $\cos$ of the same angle form a rotation, the dot product
# $PE[p] \cdot PE[q]$ is a sum of $\cos\big((p-q)/\text{base}^{2i/d}\big)$ terms: for even $d$ it depends only on
# the offset $p - q$ (with odd $d$ the last sine has no cosine partner and adds a term that depends on $p$ and $q$
# themselves). That is what lets a model attend "three tokens back" wherever it is in the sequence.
#
# **Contract.** `sinusoidal_encoding(seq_len, d_model, base=10000.0, *, device=None, dtype=None)`
# returns a `(seq_len, d_model)` tensor, `float32` unless `dtype` is given. An odd `d_model` is allowed:
# the last column is then a sine. Compute the angles in `float64` and cast at the end, so that every dtype
# gets correctly rounded values. A non-positive `d_model` raises `ValueError`.
#
# *Pitfall:* the MAE code base lays out all the sines first and then all the cosines. That is a different
# function; ours interleaves them.

# %% role="solution" name="sinusoidal_encoding"

# %% role="check" name="sinusoidal_encoding"
check("sinusoidal_encoding", sinusoidal_encoding)

# %% [markdown]
# ### Look at it
#
# Three panels. **Left:** the encoding of 64 positions in 32 dimensions, drawn transposed — position runs
# left to right and each *row* on screen is one column of $PE$. The top rows (low $i$, high frequency)
# oscillate fast, the bottom rows barely move: each position gets a unique pattern. **Middle:**
# $PE[p]\cdot PE[q]$ for all pairs — constant along every diagonal ($p - q$ fixed) and largest on the main
# diagonal. **Right:** one row of the middle panel as a curve, the similarity of position 32 with position
# $32 + \text{offset}$: it peaks at offset 0, falls off on both sides symmetrically (cosines are even) and
# does not fall monotonically — the fast frequencies make ripples, so "similar encoding" means "nearby" only
# roughly.

# %%
import matplotlib.pyplot as plt

pe = sinusoidal_encoding(64, 32)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].imshow(pe.T, aspect="auto", cmap="RdBu")
axes[0].set_xlabel("position p")
axes[0].set_ylabel("dimension")
axes[0].set_title("sinusoidal encoding")
axes[1].imshow(pe @ pe.T, cmap="viridis")
axes[1].set_title("PE[p] . PE[q]")
offsets = torch.arange(-63, 64)
axes[2].plot(offsets, [(pe[32] @ pe[32 + o]).item() if 0 <= 32 + o < 64 else float("nan") for o in offsets])
axes[2].set_xlabel("offset q - p (p = 32)")
axes[2].set_title("similarity against offset")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Adding versus concatenating
#
# With $z_i = x_i + p_i$, the score between two tokens expands into four terms:
# $z_i \cdot z_j = x_i\cdot x_j + x_i \cdot p_j + p_i \cdot x_j + p_i \cdot p_j$. The two *cross terms* mix
# content with position. Concatenating, $z_i = [x_i, p_i]$, gives only $x_i\cdot x_j + p_i\cdot p_j$ at the
# price of a wider vector. The cell below measures the terms for random embeddings, for pairs of *different*
# tokens (on the diagonal every term is a squared length, which is no comparison), and then puts content and
# position in separate subspaces.

# %%
torch.manual_seed(0)
x = torch.randn(16, 32) / math.sqrt(32) * 4
p = sinusoidal_encoding(16, 32)
terms = {"content x.x": x @ x.T, "cross x.p": x @ p.T, "cross p.x": p @ x.T, "position p.p": p @ p.T}
different = ~torch.eye(16, dtype=torch.bool)  # pairs i != j
for name, value in terms.items():
    print(f"{name:13s} mean |term| over i != j = {value[different].abs().mean():.3f}")
added = (x + p) @ (x + p).T
print("added equals the sum of all four terms:", torch.allclose(added, sum(terms.values()), atol=1e-5))

# A model that keeps content in some dimensions and position in others has no cross terms at all.
basis = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64)).Q  # (32, 32) orthonormal columns
content = torch.randn(16, 24, dtype=torch.float64) @ basis[:, :24].T  # content in a 24-dim subspace
position = sinusoidal_encoding(16, 8, dtype=torch.float64) @ basis[:, 24:].T  # positions in the other 8
print(f"separate subspaces: largest |cross term| = {(content @ position.T).abs().max():.1e}")

# %% [markdown]
# **Q1 (written).** Why might the cross terms hurt, and why do transformers usually add anyway?

# %% [markdown] role="written" name="adding_vs_concatenating" points="2"
# The cross terms $x_i\cdot p_j$ and $p_i\cdot x_j$ let the score depend on "this word at that position",
# which mixes two kinds of information the model would rather keep apart: a word's relevance should not
# change just because it moved. They are not small: as the cell above shows, for random vectors a cross term
# is about as large as the content term between two different tokens (each is a sum of $d$ products). Adding
# works anyway because the model learns both its embeddings and its projections: it can keep content and
# position in different subspaces of the $d$ dimensions, where the cross terms vanish and adding *is*
# concatenating, or make $W_Q^\top W_K$ weigh them down; and the scale of the embeddings against the encoding
# (the original transformer multiplies its embeddings by $\sqrt{d_\text{model}}$) sets how much position counts.
# Meanwhile adding keeps the model width, and so the cost, fixed — which is why it is the usual choice.

# %% [markdown]
# ## Task 2 — `relative_position_bias`
#
# Instead of encoding absolute positions in the inputs, we can tell each attention head directly how
# far apart two tokens are. A relative position bias adds a learned number $\pi_{i-j}$ to the score of query
# $i$ and key $j$, before the softmax; each head has its own table. With a maximum length $T$, offsets run
# from $-(T-1)$ to $T-1$: $2T-1$ values per head (Discussion 10, Q1(c)(ii)).
#
# **Contract.** `relative_position_bias(table, q_len, k_len)` takes `table` of shape
# `(num_heads, 2*max_len - 1)` and returns `(num_heads, q_len, k_len)` with
# `out[h, i, j] = table[h, (i - j) + max_len - 1]`. Column `max_len - 1` holds offset 0. `q_len` and `k_len`
# must be between 1 and `max_len`, else `ValueError`. The table is learned: gradients must flow back into
# `table`. Hint: build an index matrix from two `arange`s and
# index the table with it — no loops needed.

# %% role="solution" name="relative_position_bias"

# %% role="check" name="relative_position_bias"
check("relative_position_bias", relative_position_bias)

# %% [markdown]
# Every head's bias matrix is constant along its diagonals (a *Toeplitz* matrix): one learned number per offset.

# %%
torch.manual_seed(0)
table = torch.randn(2, 2 * 8 - 1)
bias = relative_position_bias(table, 8, 8)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for h in range(2):
    axes[h].imshow(bias[h], cmap="coolwarm")
    axes[h].set_title(f"head {h}: bias[i, j] depends on i - j")
plt.tight_layout()
plt.show()
print("parameters for T = 512, m = 12 heads:", 12 * (2 * 512 - 1))

# %% [markdown]
# **Q2 (written).** Suppose each query and key also carried a position vector, $q_i^{pos}$ and $k_j^{pos}$,
# concatenated to the content vectors. Which bias $\pi$ gives the same attention scores, and when can that
# bias be written as $\pi_{i-j}$?

# %% [markdown] role="written" name="relative_bias_equivalence" points="2"
# Concatenation adds $q_i^{pos}\cdot k_j^{pos}$ to the content score, so the bias $\pi_{i,j} = q_i^{pos}\cdot k_j^{pos}$
# reproduces it exactly. It is a relative bias $\pi_{i-j}$ when that dot product depends only on $i - j$, as it
# does for sinusoidal position vectors (their dot product is a sum of cosines of $(i-j)$ times each frequency).
# With $m$ heads and maximum length $T$, a learned relative bias costs $(2T-1)m$ parameters.

# %% [markdown]
# ## Task 3 (extra) — `apply_rotary`
#
# Rotary position embeddings (used by most recent language models) rotate each pair of features of a query
# or key by an angle proportional to its position. Pair $i$ has the frequency $\theta_i = \text{base}^{-2i/D}$,
# and the pair $(x_{2i}, x_{2i+1})$ of a vector at position $s$ turns by the angle $s\,\theta_i$. Rotating a
# query at position $s$ and a key at position $t$ this way leaves each pair's contribution to their dot product
# depending only on $(s - t)\,\theta_i$, so attention scores become purely relative — with no extra parameters
# and no change to the values.
#
# **Contract.** `apply_rotary(x, positions, base=10000.0)`: `x` is `(..., D)` with `D` even (else
# `ValueError`), `positions` an integer tensor that broadcasts against `x.shape[:-1]`;
# with the angle `a_i = position * θ_i`, `out[..., 2i] = x[..., 2i] cos a_i - x[..., 2i+1] sin a_i` and
# `out[..., 2i+1] = x[..., 2i] sin a_i + x[..., 2i+1] cos a_i`, in the dtype of `x`. Gradients must flow
# back to `x`.
#
# *Pitfall:* some code bases pair feature $i$ with feature $i + D/2$ ("rotate half"). That is a different
# (also valid) layout; ours pairs neighbours.

# %% role="solution" name="apply_rotary"

# %% role="check" name="apply_rotary"
check("apply_rotary", apply_rotary)

# %%
torch.manual_seed(0)
q, k = torch.randn(64), torch.randn(64)
scores = torch.tensor([[apply_rotary(q, torch.tensor(s)) @ apply_rotary(k, torch.tensor(t)) for t in range(24)]
                       for s in range(24)])
plt.imshow(scores, cmap="viridis")
plt.title("rotary: score(s, t) is constant along diagonals")
plt.xlabel("key position t")
plt.ylabel("query position s")
plt.show()

# %% [markdown]
# ## Summary
#
# Absolute sinusoidal encodings make similarity a function of the offset; a relative bias gives each head
# one learned number per offset ($(2T-1)m$ parameters); rotary embeddings build the offset into the dot
# product itself.
