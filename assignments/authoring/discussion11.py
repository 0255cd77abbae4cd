# %% [markdown]
# # Discussion 11 — Finetuning pretrained NLP models; vision transformers
#
# Worked solutions, with small demonstrations that use this course's reference implementations. Headings
# follow the worksheet's numbering. (In the student version only the questions remain.)

# %% role="answer"
import os
import time

import torch
import torch.nn as nn

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
# - **T5:** yes. It was trained multi-task in text-to-text form including MNLI: feed
#   "mnli hypothesis: … premise: …" and it generates "entailment", "neutral" or "contradiction".
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
# A ViT splits an image into patches (16×16 in the original paper), flattens and linearly projects each patch,
# puts a `[CLS]` token in front and adds position embeddings (usually learned, absolute), then runs a standard
# transformer.
#
# ### Q2(a)
# Does it matter in which order you flatten the sequence of patches?

# %% [markdown] role="answer"
# No, as long as the order is fixed and the same in training and at test time. Attention is
# permutation-equivariant; only the position embeddings tie a token to a place, and learned position embeddings
# simply learn what each slot means. Any fixed permutation of the patches gives an equivalent model (the
# position embeddings get permuted along). What must not happen is changing the order after training. The demo
# shows that a consistent permutation, with the position embeddings permuted the same way, gives exactly the
# same outputs.

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
# the cost by 16; halving the patch side also multiplies it by 16. The measurement below counts score entries and
# times the reference attention.

# %% role="answer"
def attention_time(side: int, patch: int, dim: int = 64) -> tuple[int, float]:
    n = (side // patch) ** 2 + 1
    q = torch.randn(1, n, dim)
    scaled_dot_product_attention(q, q, q)
    start = time.perf_counter()
    scaled_dot_product_attention(q, q, q)
    return n, time.perf_counter() - start


attention_time(32, 16)  # the first call in a process pays one-off start-up costs
for side, patch in [(64, 16), (128, 16), (64, 8)] if FAST else [(128, 16), (256, 16), (128, 8), (256, 8)]:
    n, seconds = attention_time(side, patch)
    print(f"{side}x{side} image, {patch}x{patch} patches: N = {n:5d} tokens, {n * n:9d} scores, {seconds * 1e3:7.2f} ms")

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
# type, counting red patches, texture or colour classification. It fails when the arrangement matters: telling
# a 6 from a 9, left from right, whether an object is above another, reading text, or any image and its
# scrambled-patch version (which it cannot tell apart). The demo: without positions, shuffling the patches leaves
# the `[CLS]` output unchanged; with positions it changes.

# %% role="answer"
torch.manual_seed(0)
embed, attention = PatchEmbedding(8, 2, 1, 16), MultiHeadAttention(16, 2)
images = torch.randn(1, 1, 8, 8)
shuffled = unpatchify(patchify(images, 2)[:, torch.randperm(16)], 2, 8, 1)
with torch.no_grad():
    for name, positions in [("with positions", embed.pos_embed.clone()), ("without positions", torch.zeros_like(embed.pos_embed))]:
        embed.pos_embed.copy_(positions)
        cls = [attention(t, t, t)[0][0, 0] for t in (embed(images), embed(shuffled))]
        print(f"{name:18s} [CLS] output changes when patches are shuffled: {not torch.allclose(*cls, atol=1e-5)}")

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
# predict patch $t+1$ (its pixels, or a discrete code from a patch tokenizer such as a VQ-VAE) from patches
# $\le t$, using a **causal mask** so no position sees the future; drop `[CLS]`, and use a start token. Training is
# parallel over positions (teacher forcing); generation samples one patch at a time, appends it and repeats. The
# demo shows the mask and a generation loop with an untrained tiny model (the shapes are the point).

# %% role="answer"
class PatchGPT(nn.Module):
    def __init__(self, patch_dim: int = 4, dim: int = 16, max_len: int = 17):
        super().__init__()
        self.embed = nn.Linear(patch_dim, dim)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.attention = MultiHeadAttention(dim, 2)
        self.out = nn.Linear(dim, patch_dim)

    def forward(self, patches):  # (B, t, patch_dim) -> prediction of the next patch at every position
        x = torch.cat([self.start.expand(len(patches), -1, -1), self.embed(patches)], 1)
        x = x + self.pos[:, : x.shape[1]]
        return self.out(x + self.attention(x, x, x, is_causal=True)[0])


model = PatchGPT()
print("causal mask for 4 positions:\n", causal_mask(4).int())
generated = torch.zeros(1, 0, 4)
with torch.no_grad():
    for step in range(16):
        next_patch = model(generated)[:, -1:]  # predict patch `step` from patches before it
        generated = torch.cat([generated, next_patch], 1)
print("generated patches", tuple(generated.shape), "-> image", tuple(unpatchify(generated, 2, 8, 1).shape))

# %% [markdown]
# ### Q2(g)
# Most images are unlabelled. How can we do BERT-style self-supervised representation learning with vision
# transformers? (Hints: how is BERT trained — how should the input change, what is the target? Why is a decoder
# needed?)

# %% [markdown] role="answer"
# Mask most of the patches (a masked autoencoder, MAE: about 75%, far more than BERT's 15% because neighbouring
# patches are redundant), encode the visible ones, and train the model to reconstruct the pixels of the masked
# patches (the target), with the loss on masked patches only. A **decoder** is needed because the ViT encoder
# outputs representations, not pixels, and — in MAE — it never even sees the masked positions: a small decoder
# receives the encoded visible tokens plus mask tokens (with position embeddings) and predicts pixels. After
# pretraining the decoder is thrown away and the encoder is finetuned or probed (without masking). The demo runs
# one MAE step's data flow with the references.

# %% role="answer"
images = torch.randn(2, 1, 8, 8)
patches = patchify(images, 2)  # (2, 16, 4)
kept, mask, ids_restore = random_masking(patches, 0.75)
decoder_input = insert_mask_tokens(kept, torch.zeros(1, 1, 4), ids_restore)
print("patches", tuple(patches.shape), "-> encoder sees", tuple(kept.shape), "-> decoder gets", tuple(decoder_input.shape))
print("loss counts only the", int(mask.sum()), "removed patches:", float(mae_loss(decoder_input, patches, mask)))
