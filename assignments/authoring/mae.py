# %% [markdown]
# # Masked autoencoders: BERT-style pretraining for images
#
# Most images come without labels. A masked autoencoder (MAE) learns from them anyway: hide most of an
# image's patches, encode only the visible ones, and train a small decoder to paint the missing patches back
# (Discussion 11, Q2(g)). The encoder that results is a good starting point for classification. You
# implement the three pieces that make MAE work:
#
# 1. `random_masking` — pick, for every image separately, which patches the encoder sees;
# 2. `insert_mask_tokens` — put a learned `[MASK]` vector in every hidden slot for the decoder;
# 3. `mae_loss` — score the reconstruction on the hidden patches only.
#
# Then you pretrain a tiny MAE on digits for a minute and test its encoder with a linear probe.
#
# **How you are graded.** Check cells run visible, property-based checks and print the smallest input on
# which your code is wrong; the autograder runs many more hidden checks against a reference. Written
# questions are graded by hand.

# %% role="selfcheck"

# %% role="setup"
import math
import os
from fractions import Fraction

import torch
import torch.nn as nn
from torch import Tensor

device = "cuda" if torch.cuda.is_available() else "cpu"
FAST = os.environ.get("COURSE_FAST") == "1"

# %% [markdown]
# ## One mask, the other way round
#
# Everywhere else in this course `True`/1 means "keep". MAE's `mask` is the exception, as in the MAE paper's
# code: **1 means the patch was removed** (hidden from the encoder) and 0 that it was kept. It is not an
# attention mask; it is a *loss weight*: the loss counts exactly the patches whose mask is 1.

# %% [markdown]
# ## Task 1 — `random_masking`
#
# For each image, draw a random number per patch (`noise`), sort the patches by it (`ids_shuffle =
# argsort(noise)`), and keep the first `len_keep` of that order. Each sample gets **its own** shuffle.
# Keep `ids_restore = argsort(ids_shuffle)`: it says where each original patch went, so the decoder can
# undo the shuffle.
#
# **How many patches to keep?** `len_keep = floor(N * (1 - mask_ratio))`. The MAE code writes
# `int(N * (1 - mask_ratio))` in floating point, and that is a bug: run the next cell.

# %%
print("int(10 * (1 - 0.9)) =", int(10 * (1 - 0.9)), " because 1 - 0.9 =", repr(1 - 0.9))
print("exact:", math.floor(10 * (1 - Fraction(str(0.9)))))

# %% [markdown]
# With 10 patches and ratio 0.9 the image should keep one patch, but float rounding leaves it with none.
# Compute the count in exact decimal arithmetic: `math.floor(N * (1 - Fraction(str(mask_ratio))))`.
# (`len_keep` may legitimately be 0, e.g. N=3, ratio=0.9.)
#
# **Contract.** `random_masking(x, mask_ratio, noise=None) -> (x_kept, mask, ids_restore)`:
# `x: (B, N, D)`; `noise: (B, N)` (draw it with `torch.rand` on `x`'s device when `None`);
# `x_kept: (B, len_keep, D)`, the kept patches **in shuffled order**; `mask: (B, N)` in the *original* patch
# order, 1.0 = removed, in the dtype of `x`; `ids_restore: (B, N)`. A ratio outside `[0, 1)` raises
# `ValueError`. Hint: `torch.gather` picks rows by index.

# %% role="solution" name="random_masking"

# %% role="check" name="random_masking"
check("random_masking", random_masking)

# %% [markdown]
# ## Task 2 — `insert_mask_tokens`
#
# The decoder needs a full sequence again. Append `N - len_keep` copies of the learned `mask_token` (shape
# `(1, 1, D)`) after the kept tokens — that is the shuffled order — and un-shuffle with `ids_restore`.
# Every hidden slot now holds the same `[MASK]` vector; position embeddings, added afterwards, tell the
# decoder *which* patch it is asked to paint.
#
# **Contract.** `insert_mask_tokens(x_kept, mask_token, ids_restore) -> (B, N, D)` in the original order.
# Gradients must flow back to `x_kept` and to `mask_token` (the mask token is learned).

# %% role="solution" name="insert_mask_tokens"

# %% role="check" name="insert_mask_tokens"
check("insert_mask_tokens", insert_mask_tokens)

# %% [markdown]
# ## Task 3 — `mae_loss`
#
# The reconstruction is scored only where the encoder saw nothing: predicting a visible patch is copying.
# For each patch take the mean squared error over its values; then **sum over all removed patches of the
# batch and divide by their number** (MAE's `forward_loss`; not a mean of per-image means, which would weigh
# an image with few hidden patches more). If nothing is removed, the loss is 0 (not NaN).
#
# With `norm_pix_loss=True` each target patch is first normalised by its own mean and unbiased variance,
# `(t - mean) / sqrt(var + 1e-6)`, which the MAE paper found gives better representations.
#
# **Contract.** `mae_loss(pred, target, mask, norm_pix_loss=False) -> scalar`, with `pred, target:
# (B, N, P*P*C)` patches and `mask: (B, N)`, 1 = removed. Gradients must flow back to `pred`: compute the
# loss with tensor operations, never through `.item()`.

# %% role="solution" name="mae_loss"

# %% role="check" name="mae_loss"
check("mae_loss", mae_loss)

# %% [markdown]
# ## A tiny MAE on digits
#
# Digits are 8×8, cut into 16 patches of 2×2 pixels. The encoder sees only the kept patches (that is what
# makes MAE cheap: with 75% masking it processes a quarter of the tokens); the decoder sees everything, with
# mask tokens in the holes.

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
labels = digits.target
P, N = 2, 16


def to_patches(x: Tensor) -> Tensor:
    """(B, 1, 8, 8) -> (B, 16, 4), the row-major (p, q, c) layout of the vit assignment."""
    return x.reshape(-1, 1, 4, P, 4, P).permute(0, 2, 4, 3, 5, 1).reshape(-1, N, P * P)


def from_patches(p: Tensor) -> Tensor:
    return p.reshape(-1, 4, 4, P, P, 1).permute(0, 5, 1, 3, 2, 4).reshape(-1, 1, 8, 8)


def blocks(dim: int, depth: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TinyMAE(nn.Module):
    def __init__(self, dim: int = 64, decoder_dim: int = 32):
        super().__init__()
        self.embed = nn.Linear(P * P, dim)
        self.pos = nn.Parameter(torch.randn(1, N, dim) * 0.02)
        self.encoder = blocks(dim, 2)
        self.to_decoder = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.randn(1, N, decoder_dim) * 0.02)
        self.decoder = blocks(decoder_dim, 1)
        self.predict = nn.Linear(decoder_dim, P * P)

    def encode(self, patches: Tensor, mask_ratio: float):
        tokens = self.embed(patches) + self.pos  # (B, N, dim)
        kept, mask, ids_restore = random_masking(tokens, mask_ratio)
        return self.encoder(kept), mask, ids_restore

    def forward(self, patches: Tensor, mask_ratio: float):
        latent, mask, ids_restore = self.encode(patches, mask_ratio)
        full = insert_mask_tokens(self.to_decoder(latent), self.mask_token, ids_restore) + self.decoder_pos
        pred = self.predict(self.decoder(full))  # (B, N, 4)
        return mae_loss(pred, patches, mask), pred, mask


def pretrain(mask_ratio: float, steps: int, seed: int = 0) -> TinyMAE:
    torch.manual_seed(seed)
    model = TinyMAE().to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    patches = to_patches(images).to(device)
    for _ in range(steps):
        batch = patches[torch.randint(len(patches), (128,))]
        loss, _, _ = model(batch, mask_ratio)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


steps = 40 if FAST else 1500
mae = pretrain(0.75, steps)
with torch.no_grad():
    torch.manual_seed(1)
    loss, pred, mask = mae(to_patches(images[:6]).to(device), 0.75)
print(f"reconstruction loss on hidden patches after {steps} steps: {loss.item():.4f}")
shown = mask.cpu()[..., None].bool()
masked_input = torch.where(shown, torch.full_like(pred.cpu(), 0.5), to_patches(images[:6]))
pasted = torch.where(shown, pred.cpu(), to_patches(images[:6]))
fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
for col in range(6):
    for row, picture in enumerate([images[col], from_patches(masked_input[col:col + 1])[0],
                                   from_patches(pasted[col:col + 1])[0]]):
        axes[row, col].imshow(picture[0], cmap="gray_r", vmin=0, vmax=1)
        axes[row, col].axis("off")
for row, title in enumerate(["original", "what the encoder sees (75% hidden)", "reconstruction"]):
    axes[row, 0].set_title(title, loc="left", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Is the encoder any good? A linear probe
#
# At finetune time the encoder sees the whole image (no masking). We freeze it, average its output
# tokens, and fit a logistic regression on those features. Compare with raw pixels and with an encoder
# that was never trained, and with an MAE pretrained with BERT's masking rate of 15%.

# %%
def features(model: TinyMAE) -> Tensor:
    with torch.no_grad():
        latent, _, _ = model.encode(to_patches(images).to(device), 0.0)  # ratio 0: the encoder sees everything
    return latent.mean(1).cpu()


def probe(x: Tensor) -> float:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = order[:1200], order[1200:]
    classifier = LogisticRegression(max_iter=300 if FAST else 2000).fit(x[train], labels[train])
    return classifier.score(x[test], labels[test])


torch.manual_seed(0)
results = {
    "raw pixels": probe(images.flatten(1)),
    "untrained encoder": probe(features(TinyMAE().to(device).eval())),
    "MAE, 75% masked": probe(features(mae)),
    "MAE, 15% masked (BERT's rate)": probe(features(pretrain(0.15, steps))),
}
for name, accuracy in results.items():
    print(f"{name:31s} linear-probe accuracy {accuracy:.3f}")

# %% [markdown]
# Read the numbers before the story. On these digits the experiment does **not** separate the two ratios: the
# two MAEs' probes land within about a point of each other (too close to call from one seed), and neither
# beats logistic regression on the raw pixels. Eight-by-eight digits are already a good representation of
# themselves, and a two-layer encoder pretrained for a minute adds little to them. (The untrained encoder's
# line shows how much of the probe's accuracy needs pretraining at all.)
#
# The case for masking far more than BERT's 15% comes from the MAE paper's study of the mask ratio (ViT-Large
# on ImageNet): fine-tuning and, more steeply, linear-probing accuracy rise as the ratio grows up to about 75%.
# The argument behind it: a word carries a lot of meaning, so hiding 15% of the tokens already makes a hard
# puzzle, while neighbouring image patches are highly redundant — with 15% hidden, a patch can be filled in by
# interpolating its neighbours, which teaches little, and only a high ratio forces the model to use what it
# knows about whole objects. One benefit of 75% this notebook does show: the encoder processes a quarter of the
# tokens, so pretraining is about four times cheaper per image.
#
# ## Written questions
#
# **Q1.** When you finetune an MAE-pretrained encoder on a downstream task, do you still mask its inputs
# (fine-tuning review, Q1(a))?

# %% [markdown] role="written" name="masking_at_finetune_time" points="2"
# No. Masking was the pretraining *task*: a way to create a self-supervised objective. For the downstream
# task the encoder should see every patch (in the probe above, `mask_ratio=0.0`), and the decoder is thrown
# away. Hiding 75% of the input at finetune or test time would only throw away information the classifier
# needs. (Light random masking can still be used as data augmentation, but that is a separate choice.)

# %% [markdown]
# **Q2.** A masked autoencoder replaces the hidden tokens with a mask token. Does it also replace their
# position embeddings (Discussion 10, Q1(g))? Why does the decoder need its own position embeddings?

# %% [markdown] role="written" name="mask_token_positions" points="2"
# No: only the *content* is replaced. In `insert_mask_tokens` every hidden slot receives the same learned
# `[MASK]` vector, and then position embeddings are added to all slots, hidden or not. If the position were
# hidden too, every mask token would be identical and the decoder could not know which patch to paint.
# (In the MAE encoder the hidden tokens are dropped entirely rather than replaced; BERT replaces the word but
# keeps its position embedding.)
#
# The decoder needs position embeddings *of its own* for two reasons. The mask tokens never pass through the
# encoder, so the encoder's position embeddings never reach them: without new ones added at the decoder's
# input, all hidden slots would still be the same vector. And the decoder is narrower than the encoder
# (`decoder_dim` 32 against 64 here; 512 against 1024 for ViT-Large in the paper), so the encoder's embeddings
# would not even fit; re-adding positions to the projected visible tokens also restores a clean position signal
# after the encoder's layers have mixed it with content.

# %% [markdown]
# ## Summary
#
# You built per-sample random masking with an exact keep count, mask-token insertion that undoes the shuffle,
# and the MAE loss on hidden patches only; you pretrained a tiny MAE and probed its encoder.
