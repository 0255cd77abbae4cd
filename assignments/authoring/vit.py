# %% [markdown]
# # Vision transformers: from pixels to tokens
#
# A transformer reads a sequence of vectors. To read an image, a Vision Transformer (ViT) cuts it into
# square patches, flattens each patch into a vector, projects it, puts a learned `[CLS]` token in front
# and adds a learned position embedding to every token (Discussion 11, Q2). In this assignment you build
# that front end:
#
# 1. `patchify` — an image batch to a sequence of flattened patches;
# 2. `unpatchify` — the exact inverse (the MAE decoder needs it to turn predicted patches back into pixels);
# 3. `PatchEmbedding` — projection, `[CLS]` token and position embeddings.
#
# Then you train a tiny ViT on handwritten digits and check whether it cares where each patch is.
#
# **How you are graded.** Check cells run visible, property-based checks and print the smallest input on
# which your code is wrong; the autograder runs many more hidden checks against a reference. Written
# questions are graded by hand.

# %% role="selfcheck"

# %% role="setup"
import os

import torch
import torch.nn as nn
from torch import Tensor

device = "cuda" if torch.cuda.is_available() else "cpu"
FAST = os.environ.get("COURSE_FAST") == "1"

# %% [markdown]
# ## Task 1 — `patchify`
#
# An image batch has shape `(B, C, H, W)`. With patch size $P$ the image becomes an $h \times w$ grid of
# patches, $h = H/P$, $w = W/P$, so $N = hw$ patches, each holding $P \cdot P \cdot C$ numbers.
#
# Two orders must be fixed, because the rest of the model (and the grader) depends on them:
#
# - **which patch comes first:** row-major over the grid — the top row of patches left to right, then the
#   next row;
# - **the order inside a patch:** `(row p, column q, channel c)` with the channel varying fastest — the
#   convention of the MAE code, whose `patchify` is `einsum('nchpwq->nhwpqc')`.
#
# **Contract.** `patchify(images, patch_size) -> (B, N, P*P*C)`. If `P` does not divide both `H` and `W`,
# raise `ValueError`. Gradients must flow back to `images`. Hint: one `reshape` to `(B, C, h, P, w, P)`, one `permute`, one `reshape`.

# %% role="solution" name="patchify"

# %% role="check" name="patchify"
check("patchify", patchify)

# %% [markdown]
# ## Task 2 — `unpatchify`
#
# **Contract.** `unpatchify(patches, patch_size, image_size, channels) -> (B, C, H, W)`, the exact inverse
# of `patchify`; `image_size` is an `int` for square images or an `(H, W)` pair. Raise `ValueError` when
# the patches cannot form such an image. Gradients must flow back to `patches`.

# %% role="solution" name="unpatchify"

# %% role="check" name="unpatchify"
check("unpatchify", unpatchify)

# %% [markdown]
# ### Digits, cut into patches
#
# `sklearn.datasets.load_digits` holds 1,797 handwritten digits of 8×8 pixels. With $P = 2$ each becomes a
# sequence of 16 patches of 4 pixels.

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
labels = torch.tensor(digits.target)
patches = patchify(images[:1], 2)  # (1, 16, 4)
fig, axes = plt.subplots(1, 2, figsize=(7, 3.2), gridspec_kw={"width_ratios": [1, 1]})
axes[0].imshow(images[0, 0], cmap="gray_r")
axes[0].set_title(f"a {labels[0].item()}")
grid = torch.ones(4 * 3, 4 * 3)
for index in range(16):
    row, col = divmod(index, 4)
    grid[row * 3:row * 3 + 2, col * 3:col * 3 + 2] = 1 - patches[0, index].reshape(2, 2)
axes[1].imshow(grid, cmap="gray", vmin=0, vmax=1)
axes[1].set_title("its 16 patches, in sequence order")
for ax in axes:
    ax.axis("off")
plt.show()
print("round trip exact:", torch.equal(unpatchify(patchify(images, 2), 2, 8, 1), images))

# %% [markdown]
# ## Task 3 — `PatchEmbedding`
#
# **Contract.** `PatchEmbedding(image_size, patch_size, in_channels, embed_dim)` with exactly these
# parameters: `proj = nn.Linear(P*P*C, embed_dim)`, `cls_token = nn.Parameter` of shape `(1, 1, D)` and
# `pos_embed = nn.Parameter` of shape `(1, N + 1, D)` (learned absolute positions, one for `[CLS]` and one
# per patch). `forward(images)` returns `(B, N + 1, D)`:
# `cat([cls_token, proj(patchify(images))], dim=1) + pos_embed`. Raise `ValueError` if the patch size does not
# divide the image; `image_size` is an `int` or an `(H, W)` pair, as in `unpatchify`. Initialise `pos_embed` with small random values (e.g. `0.02 * randn`).
#
# A linear layer applied to every flattened patch is exactly a convolution with kernel size and stride $P$;
# the check cell verifies your module against one.

# %% role="solution" name="PatchEmbedding"

# %% role="check" name="PatchEmbedding"
check("PatchEmbedding", PatchEmbedding)

# %% [markdown]
# ## A tiny ViT on digits
#
# Two pre-norm transformer blocks on top of your `PatchEmbedding`, classifying from the `[CLS]` token.
# (The blocks use PyTorch's `nn.MultiheadAttention` so this notebook stands alone; the attention
# assignment builds that piece.)

# %%
class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 48, depth: int = 2, heads: int = 4, use_positions: bool = True):
        super().__init__()
        self.embed = PatchEmbedding(8, 2, 1, dim)
        if not use_positions:
            self.embed.pos_embed.data.zero_()
            self.embed.pos_embed.requires_grad_(False)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 10))

    def forward(self, images):
        return self.head(self.blocks(self.embed(images))[:, 0])


def train(model, epochs: int) -> float:
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=generator)
    train_idx, test_idx = order[:1437], order[1437:]
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    model.to(device).train()
    for _ in range(epochs):
        for batch in train_idx[torch.randperm(len(train_idx), generator=generator)].split(64):
            loss = nn.functional.cross_entropy(model(images[batch].to(device)), labels[batch].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return evaluate(model, test_idx)


@torch.no_grad()
def evaluate(model, index, shuffle_patches: torch.Tensor | None = None) -> float:
    model.eval()
    x = images[index]
    if shuffle_patches is not None:
        x = unpatchify(patchify(x, 2)[:, shuffle_patches], 2, 8, 1)
    return (model(x.to(device)).argmax(-1).cpu() == labels[index]).float().mean().item()


torch.manual_seed(0)
vit = TinyViT()
epochs = 2 if FAST else 15
accuracy = train(vit, epochs)
print(f"test accuracy after {epochs} epochs: {accuracy:.3f}")

# %% [markdown]
# ### Does the order of patches matter?
#
# We shuffle the 16 patches of every test image with one fixed permutation and ask the trained model again.
# With position embeddings, the model has learned what belongs where, so a shuffled image is a different
# input. A model trained *without* position embeddings sees a set of patches: shuffling changes nothing,
# because attention is permutation-equivariant and the `[CLS]` token reads an unordered set.

# %%
test_idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[1437:]
shuffle = torch.randperm(16, generator=torch.Generator().manual_seed(1))
torch.manual_seed(0)
no_positions = TinyViT(use_positions=False)
accuracy_no_positions = train(no_positions, epochs)
print(f"with positions:    {evaluate(vit, test_idx):.3f} in order, "
      f"{evaluate(vit, test_idx, shuffle):.3f} with patches shuffled")
print(f"without positions: {evaluate(no_positions, test_idx):.3f} in order, "
      f"{evaluate(no_positions, test_idx, shuffle):.3f} with patches shuffled")

# %% [markdown]
# ## Written questions
#
# **Q1.** Does it matter in which order the patches are flattened into a sequence (Discussion 11, Q2(a))?

# %% [markdown] role="written" name="patch_order" points="2"
# Not which order, as long as it is the same for every image, in training and at test time. Attention is
# permutation-equivariant: the only thing that ties a token to its place is its position embedding, and a
# learned embedding simply learns whatever the fixed order means. Changing the order between training and
# testing (as in the experiment above) does matter: the learned position embeddings then describe the wrong
# places. Without position embeddings the order never matters, which also means the model cannot tell a
# digit from a scrambled version of it.

# %% [markdown]
# **Q2.** What does one attention layer cost for an $H \times W$ image with $P \times P$ patches and
# vectors of size $D$ (Discussion 11, Q2(b))? What does halving $P$ do?

# %% [markdown] role="written" name="vit_attention_cost" points="2"
# There are $N = HW/P^2$ tokens; scores cost $N^2 D$ and the weighted sum another $N^2 D$, so
# $O\big((HW/P^2)^2 D\big) = O(H^2W^2D/P^4)$. Halving $P$ multiplies $N$ by 4 and the attention cost by 16:
# finer patches see more detail but cost far more, which is why ViTs use large patches (16×16) on large images.

# %% [markdown]
# ## Summary
#
# You turned images into token sequences with a fixed, documented layout, built the ViT embedding (a
# strided convolution in disguise) and saw that a ViT knows where a patch is only through its position
# embedding.
