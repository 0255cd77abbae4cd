# %% [markdown]
# # Discussion 11 — Finetuning pretrained NLP models; vision transformers
#
# Questions follow the worksheet's numbering.

# %% role="answer"
import os

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

from solutions.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from solutions.finetune import cls_pool, mean_pool
from solutions.mae import insert_mask_tokens, mae_loss, random_masking
from solutions.vit import PatchEmbedding, patchify, unpatchify

FAST = os.environ.get("COURSE_FAST") == "1"
torch.manual_seed(0)

# %% [markdown]
# ## 1. Finetuning pretrained NLP models
#
# We compare three architectures: **BERT** (encoder only), **T5** (encoder–decoder) and **GPT** (decoder only).
#
# ### Q1(a)
# State the pretraining objective of each of the three models.

# %% [markdown] role="answer"
# - **BERT:** masked language modelling — about 15% of the input tokens are selected and the model predicts them
#   from both sides (of those, 80% are replaced by `[MASK]`, 10% by a random token, 10% left unchanged) — plus
#   next-sentence prediction: given two segments, was the second the real continuation?
# - **T5:** span corruption, a text-to-text denoising objective: random spans of the input are replaced by
#   sentinel tokens and the decoder generates the missing spans; (supervised tasks are also cast as text-to-text).
# - **GPT:** next-token prediction (causal language modelling): predict each token from the ones before it.

# %% [markdown]
# ### Q1(b)
# MNLI gives a passage (premise) and a hypothesis; the task is to say whether the hypothesis is entailed,
# contradicted, or neither (neutral). Example — passage: "At the other end of Pennsylvania Avenue, people began
# to line up for a White House tour." Hypothesis: "People formed a line at the end of Pennsylvania Avenue."
# Label: entailment.
#
# ### Q1(b)(i)
# Can each model do this task with no finetuning and no added parameters? If so, how?

# %% [markdown] role="answer"
# - **BERT:** not really. Its outputs are token embeddings and masked-token predictions; with no classifier head
#   there is no way to read out three classes. (A cloze trick — "premise? [MASK], hypothesis" and compare the
#   scores of "yes", "maybe", "no" for the mask — can give weak zero-shot results, but it is not what BERT was
#   trained for.)
# - **T5:** yes, for the checkpoints the T5 paper released: they were pretrained on a mixture of span corruption
#   and supervised tasks in text-to-text form, MNLI among them, so feeding "mnli hypothesis: … premise: …" makes
#   the model generate "entailment", "neutral" or "contradiction". A checkpoint pretrained with span corruption
#   only (such as T5 v1.1) has never seen the task and would need finetuning or a prompt it was not trained on.
# - **GPT:** yes, by prompting: write the premise and hypothesis and a question ("Does the passage imply the
#   hypothesis? Answer yes, no or maybe:"), possibly with a few solved examples in the prompt (in-context
#   learning), and compare the probabilities of the answer words. Large models do this reasonably well.

# %% [markdown]
# ### Q1(b)(ii)
# How would you use each model if you may add parameters and/or finetune?

# %% [markdown] role="answer"
# - **BERT:** feed "[CLS] premise [SEP] hypothesis [SEP]", take the final `[CLS]` vector (or the mean of the
#   token vectors), add a linear layer to 3 classes, and finetune everything (or only the head: linear
#   probing) with cross-entropy.
# - **T5:** finetune it to generate the label word from "premise … hypothesis …" (the text-to-text way), or put a
#   classification head on the encoder output.
# - **GPT:** add a classification head on the final token's hidden state (it is the only position that has seen
#   the whole input under the causal mask) and finetune; or keep the model frozen and learn a soft prompt; or
#   finetune it to generate the label word.

# %% role="answer"
# The shapes of the BERT recipe, with random numbers standing in for the encoder's output.
batch, tokens, width = 4, 20, 768
hidden = torch.randn(batch, tokens, width)  # last hidden state: one vector per token
attention_mask = torch.ones(batch, tokens, dtype=torch.long)
attention_mask[0, 15:] = 0  # the first pair is shorter and padded
head = nn.Linear(width, 3)
print("CLS pooling:", tuple(cls_pool(hidden).shape), " mean pooling:", tuple(mean_pool(hidden, attention_mask).shape),
      " logits:", tuple(head(cls_pool(hidden)).shape))

# %% [markdown]
# ### Q1(c)
# Compare how we use BERT's pretrained representations with how we use an autoencoder's.

# %% [markdown] role="answer"
# Both are self-supervised: the model learns by reconstructing its input, and we keep the encoder and throw
# away (or ignore) the part that reconstructs. Differences:
#
# - An autoencoder compresses the *whole* input through a bottleneck and we use that low-dimensional code as the
#   representation. BERT has no bottleneck: it is a *denoising* (masked) autoencoder that outputs one
#   contextual vector per token, as wide as its input; we use those vectors (or `[CLS]` / a mean of them).
# - An autoencoder's code is usually a fixed feature extractor (frozen, a classifier on top). BERT is usually
#   finetuned end to end, so the representation itself adapts to the task.
# - BERT's representations are contextual: the same word gets a different vector in each sentence.

# %% [markdown]
# ## 2. Vision transformers
#
# A ViT splits an image into patches, flattens and linearly projects each patch, puts a `[CLS]` token in front
# and adds position embeddings (usually learned, absolute), then runs a standard transformer. (The worksheet
# says the original paper used "a 16x16 grid of patches"; the paper's patches are 16×16 *pixels*, so a
# 224×224 image becomes a 14×14 grid.)
#
# ### Q2(a)
# Does it matter in which order you flatten the sequence of patches?

# %% [markdown] role="answer"
# For the ViT as described — learned absolute position embeddings, one per slot — no, as long as the order is
# fixed and the same in training and at test time. Attention is permutation-equivariant; only the position
# embeddings tie a token to a place, and learned position embeddings simply learn what each slot means. Any
# fixed permutation of the patches gives an equivalent model (the position embeddings get permuted along). What
# must not happen is changing the order after training. The demo shows that a consistent permutation, with the
# position embeddings permuted the same way, gives exactly the same outputs.
#
# The order does matter wherever something assumes the grid layout behind the sequence:
#
# - *2D or relative position encodings* compute a patch's encoding, or the bias between two patches, from its
#   row and column; they must recover those from the sequence index, so they presume one flattening order.
# - *A change of resolution:* fine-tuning at a higher resolution means more patches, and the learned position
#   embeddings are resized by reshaping them into the grid and interpolating in 2D — which only makes sense if
#   slot $k$ is the patch at row $k \div w$, column $k \bmod w$.
# - *Generation* (Q2(f)): an autoregressive model predicts each patch from the ones before it, so the order
#   decides what each prediction is conditioned on; raster order is a real modelling choice there.

# %% role="answer"
torch.manual_seed(0)
embed = PatchEmbedding(8, 2, 1, 16)
block = MultiHeadAttention(16, 2)
images = torch.randn(2, 1, 8, 8)
order = torch.randperm(16)
with torch.no_grad():
    tokens = embed(images)
    out = block(tokens, tokens, tokens)[0]
    # The same model with patches flattened in another fixed order: permute patch tokens and their positions.
    patch_tokens = embed.proj(patchify(images, 2))[:, order] + embed.pos_embed[:, 1:][:, order]
    permuted = torch.cat([embed.cls_token.expand(2, -1, -1) + embed.pos_embed[:, :1], patch_tokens], 1)
    out_permuted = block(permuted, permuted, permuted)[0]
print("[CLS] output identical under a consistent reordering:", torch.allclose(out[:, 0], out_permuted[:, 0], atol=1e-5))

# %% [markdown]
# ### Q2(b)
# What does the attention operation cost for an $H\times W$ image with $P\times P$ patches and vectors of size $D$
# (not counting the projections)?

# %% [markdown] role="answer"
# There are $N = \frac{HW}{P^2}$ tokens (plus `[CLS]`). The scores take $N^2$ dot products of length $D$ and the
# weighted sum as much again: $O(N^2D) = O\!\left(\frac{H^2W^2}{P^4}D\right)$. Doubling the image side multiplies
# $N$ by 4 and the cost by 16; halving the patch side does the same. The measurement below times the reference
# attention (the median of repeated calls after a warm-up, at sizes where one call takes milliseconds) and prints
# each time as a multiple of the smallest case's, beside the growth of $N^2$. Expect the ratios to follow $N^2$
# only roughly: a small score matrix fits in the processor's caches and a large one does not, fixed per-call
# costs weigh on small cases, and a busy machine adds noise. The two cases with the same $N$ — a twice larger
# image, or twice smaller patches — should take about the same time.

# %% role="answer"
def attention_time(side: int, patch: int, dim: int = 64) -> tuple[int, float]:
    """(tokens, median seconds) of one self-attention call over the patches of a side x side image.

    torch's Timer warms up, repeats the call in blocks for at least a second and reports the median block;
    on a GPU it would also synchronise before reading the clock."""
    n = (side // patch) ** 2 + 1
    q = torch.randn(1, n, dim)  # (B, N, D)
    timer = Timer("attention(q, q, q)", globals={"attention": scaled_dot_product_attention, "q": q})
    return n, timer.blocked_autorange(min_run_time=1.0).median


cases = [(256, 16), (512, 16), (256, 8)] if FAST else [(512, 16), (1024, 16), (512, 8)]
(n0, t0), *_ = measured = [attention_time(side, patch) for side, patch in cases]
for (side, patch), (n, seconds) in zip(cases, measured):
    print(f"{side}x{side} image, {patch}x{patch} patches: N = {n:5d}, N^2 x{(n / n0) ** 2:6.1f}, "
          f"time {seconds * 1e3:8.2f} ms = x{seconds / t0:6.1f}")

# %% [markdown]
# ### Q2(c)
# What is the receptive field of one token after the first transformer layer? Compare with a conv net; pros and
# cons?

# %% [markdown] role="answer"
# The whole image: attention connects every patch to every other patch in one layer (global receptive field).
# A conv layer with a $3\times3$ kernel sees only a $3\times3$ neighbourhood, and the receptive field grows
# slowly with depth. *Pros* of the ViT: long-range relations from the first layer, flexible, data-dependent
# mixing. *Cons*: no built-in locality or translation equivariance (a weaker inductive bias), so ViTs need much
# more data or augmentation to match conv nets on small datasets, and the cost is quadratic in the number of
# patches. The gradient test below finds which input pixels influence one output position.

# %% role="answer"
torch.manual_seed(0)
image = torch.randn(1, 1, 16, 16, requires_grad=True)
conv = nn.Conv2d(1, 4, 3, padding=1)
(conv_grad,) = torch.autograd.grad(conv(image)[0, :, 8, 8].sum(), image)
embed, attention = PatchEmbedding(16, 4, 1, 16), MultiHeadAttention(16, 2)
tokens = embed(image)
(vit_grad,) = torch.autograd.grad(attention(tokens, tokens, tokens)[0][0, 5].sum(), image)
print("pixels influencing one conv output:", int((conv_grad != 0).sum()), "of 256")
print("pixels influencing one ViT token after one layer:", int((vit_grad != 0).sum()), "of 256")

# %% [markdown]
# ### Q2(d)
# Without positional encodings, could the model learn anything? Give a task it could do well and one it would do
# badly.

# %% [markdown] role="answer"
# Yes: it would see the image as a *bag of patches*, and a set of patches still carries a lot — colours, textures,
# which parts are present. It can do well when the answer does not depend on layout: "is there a dog?", scene
# type, counting red patches, texture or colour classification. It fails exactly where only the layout differs,
# i.e. where two images are the same patches in a different arrangement: an image and its patch-shuffled
# version (identical to the model), which of two objects is left of the other (swapping them moves whole patches),
# whether one object is above another, the order of words in a photographed sentence.
#
# Careful with examples that *look* like layout: a 6 and a 9 differ by a rotation, and rotating a digit also
# rotates the pixels inside every patch, so the set of patches changes and a bag-of-patches model can still tell
# them apart (the `vit` notebook's model trained without positions confuses very few of them). The demo: without
# positions, shuffling the patches — or swapping the left and right halves of the image patch by patch — leaves
# the `[CLS]` output unchanged; with positions it changes.

# %% role="answer"
torch.manual_seed(0)
embed, attention = PatchEmbedding(8, 2, 1, 16), MultiHeadAttention(16, 2)
images = torch.randn(1, 1, 8, 8)
grid = torch.arange(16).reshape(4, 4)  # patch index at (row, column) of the 4x4 grid
rearranged = {"shuffled": torch.randperm(16),
              "left and right halves swapped": torch.cat([grid[:, 2:], grid[:, :2]], 1).flatten()}
with torch.no_grad():
    for name, positions in [("with positions", embed.pos_embed.clone()), ("without positions", torch.zeros_like(embed.pos_embed))]:
        embed.pos_embed.copy_(positions)
        for change, order in rearranged.items():
            other = unpatchify(patchify(images, 2)[:, order], 2, 8, 1)
            cls = [attention(t, t, t)[0][0, 0] for t in (embed(images), embed(other))]
            print(f"{name:18s} [CLS] output changes with patches {change}: {not torch.allclose(*cls, atol=1e-5)}")

# %% [markdown]
# ### Q2(e)
# How would you add a few conv layers to this architecture?

# %% [markdown] role="answer"
# Put them in front, as a *conv stem*: a few strided convolutions turn the image into a feature map, and each
# position of the feature map (or a small patch of it) becomes a token. This replaces the single large-stride
# "patchify + linear" layer (itself a conv with kernel = stride = $P$) with gentler, overlapping convolutions,
# which adds locality bias, makes training more stable and usually improves accuracy on modest data (the
# "early convolutions" result). Other options: convolutions inside the MLP of each block, or a hybrid CNN
# backbone whose final feature map is the token sequence. Shapes below.

# %% role="answer"
stem = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
                     nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                     nn.Conv2d(64, 128, 3, stride=2, padding=1))
image = torch.randn(2, 3, 64, 64)
features = stem(image)  # (2, 128, 8, 8)
tokens = features.flatten(2).transpose(1, 2)  # (2, 64, 128): one token per feature-map position
print("image", tuple(image.shape), "-> conv stem", tuple(features.shape), "-> tokens", tuple(tokens.shape))

# %% [markdown]
# ### Q2(f)
# How would you use this architecture for GPT-style autoregressive generation of images?

# %% [markdown] role="answer"
# Treat the image as a sequence of patches in a fixed order (raster order) and train a decoder: at position $t$
# the model outputs a prediction for patch $t+1$ from patches $\le t$, with a **causal mask** so no position sees
# the future; drop `[CLS]` and start from a learned start token. Training is parallel over positions (teacher
# forcing); generation produces one patch at a time, appends it and repeats.
#
# To *sample* — to get a different image each time, as GPT gets different text — the model must predict a
# **distribution** over the next patch, not a single value. A regression head that outputs pixel values gives
# one deterministic answer (roughly the conditional mean, a blur of all plausible patches), and feeding it back
# produces the same image every time. So image GPTs make the outputs discrete: Image GPT reduces colours to a
# palette of 512 clusters and predicts a softmax over it for each pixel; patch-based models predict codes from a
# learned tokenizer (a VQ-VAE codebook). The demo does the smallest version of this: a binary 2×2 patch has 16
# possible values, so each patch is one of 16 codes and the model outputs 16 probabilities. The model is untrained
# (the mechanics are the point): two sampled images differ, greedy decoding repeats itself.

# %% role="answer"
class PatchGPT(nn.Module):
    """A one-layer causal transformer over patch codes: logits for the next patch's code at every position."""

    def __init__(self, codes: int = 16, dim: int = 16, max_len: int = 16):
        super().__init__()
        self.embed = nn.Embedding(codes, dim)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.attention = MultiHeadAttention(dim, 2)
        self.out = nn.Linear(dim, codes)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # (B, t) integer codes -> (B, t + 1, codes) logits
        x = torch.cat([self.start.expand(len(codes), -1, -1), self.embed(codes)], 1)
        x = x + self.pos[:, : x.shape[1]]
        return self.out(x + self.attention(x, x, x, is_causal=True)[0])


def to_image(codes: torch.Tensor) -> torch.Tensor:
    """(B, 16) codes -> (B, 1, 8, 8) binary images: bit k of a code is pixel k of its 2x2 patch."""
    bits = (codes[..., None] >> torch.arange(4)) & 1  # (B, 16, 4)
    return unpatchify(bits.float(), 2, 8, 1)


def generate(model: PatchGPT, samples: int, greedy: bool, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.zeros(samples, 0, dtype=torch.long)
    with torch.no_grad():
        for _ in range(16):
            probs = model(codes)[:, -1].softmax(-1)  # (B, 16): the distribution of the next patch's code
            nxt = probs.argmax(-1, keepdim=True) if greedy else torch.multinomial(probs, 1, generator=generator)
            codes = torch.cat([codes, nxt], 1)
    return codes


torch.manual_seed(0)
model = PatchGPT()
print("causal mask for 4 positions:\n", causal_mask(4).int())
first, second = generate(model, 1, greedy=False, seed=1), generate(model, 1, greedy=False, seed=2)
print("two sampled images differ:", not torch.equal(to_image(first), to_image(second)))
print("greedy decoding twice gives the same image:",
      torch.equal(generate(model, 1, greedy=True, seed=1), generate(model, 1, greedy=True, seed=2)))
print("codes", tuple(first.shape), "-> image", tuple(to_image(first).shape))

# %% [markdown]
# ### Q2(g)
# Most images are unlabelled. How can we do BERT-style self-supervised representation learning with vision
# transformers? (Hints: how is BERT trained — how should the input change, what is the target? Why is a decoder
# needed?)

# %% [markdown] role="answer"
# Do what BERT does with words: hide part of the input and train the model to fill it in. The input is the image
# with some patches masked; the target is what was hidden (the pixels of the masked patches), and the loss is
# computed on masked patches only. Two designs:
#
# - **BERT-style, mask tokens in the encoder (BEiT, SimMIM):** replace each hidden patch's embedding by a learned
#   `[MASK]` vector, keep its position embedding, run the ViT on all $N$ tokens, and put a light prediction head on
#   the outputs at the masked positions (SimMIM: a linear layer to raw pixels; BEiT: a softmax over discrete visual
#   tokens from a separate tokenizer, like BERT's softmax over words).
# - **Masked autoencoder (MAE):** mask most patches (about 75%, far more than BERT's 15%, because neighbouring
#   patches are redundant), drop them from the encoder's input entirely, so the encoder runs on the visible quarter
#   only, and let a small separate decoder receive the encoded visible tokens plus mask tokens (with their own
#   position embeddings) and predict pixels.
#
# Why a decoder (hint 2): the ViT encoder outputs representations, not pixels, and the representation we want is
# the encoder's, not one bent towards pixel details — a separate decoder (or at least a head) does the
# reconstruction and is thrown away afterwards; in MAE it is also the only part that ever sees the masked
# positions. After pretraining the encoder is finetuned or probed, without masking. The demo wires one MAE step
# with the references and untrained stand-in layers: the numbers are meaningless, the data flow is the point —
# including that the loss ignores the predictions at visible patches.

# %% role="answer"
torch.manual_seed(0)
images = torch.randn(2, 1, 8, 8)
patches = patchify(images, 2)  # (2, 16, 4): the target
embed, position = nn.Linear(4, 16), torch.randn(1, 16, 16) * 0.02
encoder, to_decoder = MultiHeadAttention(16, 2), nn.Linear(16, 8)
mask_token, decoder_position = torch.zeros(1, 1, 8), torch.randn(1, 16, 8) * 0.02
decoder, to_pixels = MultiHeadAttention(8, 2), nn.Linear(8, 4)
with torch.no_grad():
    kept, mask, ids_restore = random_masking(embed(patches) + position, 0.75)  # (2, 4, 16): the visible quarter
    latent = encoder(kept, kept, kept)[0]
    full = insert_mask_tokens(to_decoder(latent), mask_token, ids_restore) + decoder_position  # (2, 16, 8)
    pred = to_pixels(decoder(full, full, full)[0])  # (2, 16, 4): a prediction for every patch
    loss = mae_loss(pred, patches, mask)
    changed_where_visible = pred + 10 * (1 - mask)[..., None]
print("patches", tuple(patches.shape), "-> encoder sees", tuple(kept.shape), "-> decoder gets", tuple(full.shape),
      "-> prediction", tuple(pred.shape))
print(f"loss over the {int(mask.sum())} removed patches: {float(loss):.3f}; unchanged when the predictions at "
      f"visible patches change: {torch.equal(loss, mae_loss(changed_where_visible, patches, mask))}")
