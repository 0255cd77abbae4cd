"""A class of attention submissions written the way students write them, for the class-report tests.

Each student fills the released stubs (`# YOUR CODE HERE` / `raise NotImplementedError()`) with their own
bodies, in their own style; tasks a student did not do stay as released. Who is who:

- ana, ben: correct, written independently (matmul + masked_fill; einsum + where);
- cleo: ben's notebook with every variable renamed, comments rewritten and moved;
- lu: ana's notebook renamed the same way, with a block moved and a line added;
- dev, eve: scores not divided by sqrt(E), each in their own code;
- finn: reads boolean masks the nn.MultiheadAttention way (True = masked out);
- gus, hana: causal masks that hide the diagonal, each in their own code;
- ivy: torch's own scaled_dot_product_attention through an alias (forbidden by the task text);
- jo: the notebook as released (blank); kai: a file that is not a notebook.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat

from autograder.release import released_notebook

CAUSAL = {
    "ana": "return torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool, device=device))",
    "ben": """
        idx = torch.arange(seq_len, device=device)
        return idx[None, :] <= idx[:, None]
        """,
    "dev": "return torch.ones(seq_len, seq_len, device=device).tril().bool()",
    "eve": """
        rows = torch.arange(seq_len, device=device).unsqueeze(1)
        cols = torch.arange(seq_len, device=device).unsqueeze(0)
        return cols <= rows
        """,
    "finn": "return ~torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu(diagonal=1)",
    "gus": "return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril(diagonal=-1)",
    "hana": """
        m = torch.zeros(seq_len, seq_len, dtype=torch.bool, device=device)
        for i in range(seq_len):
            m[i, :i] = True   # everything before i
        return m
        """,
    "ivy": "return torch.ones((seq_len, seq_len), device=device).tril() > 0",
}

SDPA = {
    "ana": """
        # similarity of each query with each key, scaled
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            elif attn_mask.is_floating_point():
                scores = scores + attn_mask
            else:
                raise ValueError("attn_mask must be bool or float")
        if is_causal:
            keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        empty = torch.isneginf(scores).all(dim=-1, keepdim=True)  # queries with nothing allowed
        weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
        return torch.matmul(weights, v), weights
        """,
    "ben": """
        E = q.shape[-1]
        # raw attention logits
        logits = torch.einsum("...qe,...ke->...qk", q, k) * E ** -0.5
        allowed = torch.ones_like(logits, dtype=torch.bool)
        if is_causal:
            Lq, Lk = logits.shape[-2:]
            allowed = allowed & torch.tril(torch.ones(Lq, Lk, dtype=torch.bool, device=q.device))
        if attn_mask is not None:
            if attn_mask.dtype not in (torch.bool, torch.float16, torch.bfloat16, torch.float32, torch.float64):
                raise ValueError(f"bad mask dtype {attn_mask.dtype}")
            if attn_mask.dtype == torch.bool:
                allowed = allowed & attn_mask
            else:
                logits = logits + attn_mask
        logits = torch.where(allowed, logits, torch.full_like(logits, -torch.inf))
        # softmax by hand so empty rows give zeros
        top = logits.max(dim=-1, keepdim=True).values
        top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
        e = torch.exp(logits - top)
        z = e.sum(dim=-1, keepdim=True)
        probs = e / torch.where(z == 0, torch.ones_like(z), z)
        return torch.einsum("...qk,...kv->...qv", probs, v), probs
        """,
    "dev": """
        s = q @ k.mT
        if attn_mask is not None:
            if attn_mask.dtype is torch.bool:
                s = s.masked_fill(attn_mask.logical_not(), -math.inf)
            elif torch.is_floating_point(attn_mask):
                s += attn_mask
            else:
                raise ValueError("mask dtype")
        if is_causal:
            n, m = s.shape[-2], s.shape[-1]
            s = s.masked_fill(torch.ones(n, m, device=s.device).triu(1).bool(), -math.inf)
        p = s.softmax(-1).nan_to_num()
        return p @ v, p
        """,
    "eve": """
        out_dtype = q.dtype
        if attn_mask is not None and not (attn_mask.dtype == torch.bool or attn_mask.dtype.is_floating_point):
            raise ValueError("attention mask has to be boolean or floating point")
        sc = torch.bmm(q.reshape(-1, q.shape[-2], q.shape[-1]), k.reshape(-1, k.shape[-2], k.shape[-1]).transpose(1, 2))
        sc = sc.reshape(*q.shape[:-1], k.shape[-2])
        additive = torch.zeros(q.shape[-2], k.shape[-2], dtype=sc.dtype, device=sc.device)
        if is_causal:
            additive = additive.masked_fill(torch.triu(torch.ones_like(additive, dtype=torch.bool), 1), float("-inf"))
        sc = sc + additive
        if attn_mask is not None:
            sc = sc + (torch.zeros_like(attn_mask, dtype=sc.dtype).masked_fill(~attn_mask, float("-inf"))
                       if attn_mask.dtype == torch.bool else attn_mask)
        w = torch.softmax(sc, dim=-1)
        w = torch.where(torch.isnan(w), torch.zeros_like(w), w)
        return (w @ v).to(out_dtype), w.to(out_dtype)
        """,
    "finn": """
        d = q.shape[-1]
        att = q @ k.transpose(-1, -2) / d ** 0.5
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                att = att.masked_fill(attn_mask, float("-inf"))   # masked positions
            elif attn_mask.is_floating_point():
                att = att + attn_mask
            else:
                raise ValueError("unsupported mask")
        if is_causal:
            future = torch.ones(att.shape[-2], att.shape[-1], dtype=torch.bool, device=att.device).triu(1)
            att = att.masked_fill(future, float("-inf"))
        att = torch.softmax(att, -1).nan_to_num(0.0)
        return att @ v, att
        """,
    "ivy": """
        if attn_mask is not None and attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise ValueError("attn_mask must be boolean or floating")
        mask = attn_mask
        if is_causal:
            causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            mask = causal if mask is None else (mask & causal if mask.dtype == torch.bool
                                                else mask.masked_fill(~causal, float("-inf")))
        output = attend(q, k, v, attn_mask=mask)
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
        weights = logits.softmax(-1).nan_to_num(0.0)
        return output.nan_to_num(0.0), weights
        """,
}

MHA_INIT = {
    "ana": """
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        """,
    "ben": """
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"{embed_dim} is not divisible by {num_heads}")
        self.h = num_heads
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self, name, nn.Linear(embed_dim, embed_dim, bias=bias))
        """,
}

MHA_FORWARD = {
    "ana": """
        B, Lq, E = query.shape
        Lk = key.shape[1]

        def heads(x, L):
            return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(self.q_proj(query), Lq)
        k = heads(self.k_proj(key), Lk)
        v = heads(self.v_proj(value), Lk)
        additive = torch.zeros(B, 1, Lq, Lk, dtype=q.dtype, device=q.device)
        if attn_mask is not None:
            additive = additive + (torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(~attn_mask, float("-inf"))
                                   if attn_mask.dtype == torch.bool else attn_mask)
        if key_padding_mask is not None:
            additive = additive.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=additive, is_causal=is_causal)
        out = out.transpose(1, 2).reshape(B, Lq, E)
        return self.out_proj(out), weights
        """,
    "ben": """
        # split the model dimension into heads
        b, n, e = query.shape
        m = key.shape[1]
        qh = self.q_proj(query).reshape(b, n, self.h, e // self.h).permute(0, 2, 1, 3)
        kh = self.k_proj(key).reshape(b, m, self.h, e // self.h).permute(0, 2, 1, 3)
        vh = self.v_proj(value).reshape(b, m, self.h, e // self.h).permute(0, 2, 1, 3)
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask.view(b, 1, 1, m)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                mask = attn_mask if mask is None else mask & attn_mask
            else:
                extra = attn_mask if mask is None else attn_mask.masked_fill(~mask, float("-inf"))
                mask = extra
        ctx, att = scaled_dot_product_attention(qh, kh, vh, mask, is_causal)
        # merge the heads back
        ctx = ctx.permute(0, 2, 1, 3).reshape(b, n, e)
        return self.out_proj(ctx), att
        """,
}

# cleo copied ben: the same code with every local name changed, ben's comments dropped and others written
# in other places. lu copied ana the same way, then moved the causal block up and added a line.
RENAMES = {"logits": "scores_mat", "allowed": "ok", "top": "mx", "probs": "attn_w", "e": "ex", "z": "norm",
           "qh": "Q", "kh": "K", "vh": "V", "ctx": "context", "att": "attn", "extra": "combined", "idx": "pos",
           "b": "bsz", "n": "tq", "m": "tk", "mask": "msk", "scores": "s", "keep": "lower", "weights": "p",
           "heads": "split_heads", "additive": "add_mask", "out": "y", "empty": "no_key"}


def _disguise(body: str, comment: str) -> str:
    """`body` with its comments dropped, its names renamed, and `comment` as a new second line."""
    body = textwrap.dedent(re.sub(r"\s*# .*", "", body)).strip("\n")
    body = re.sub(r"\b(" + "|".join(RENAMES) + r")\b", lambda m: RENAMES[m.group(1)], body)
    lines = body.splitlines()
    return "\n".join([*lines[:1], comment, *lines[1:]])


def _lu_attention(body: str) -> str:
    """ana's attention with the is_causal block moved before the mask block, and one more line."""
    lines = textwrap.dedent(body).strip("\n").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("if is_causal"))
    causal = lines[start:start + 3]
    rest = lines[:start] + lines[start + 3:]
    after_scores = next(i for i, line in enumerate(rest) if line.startswith("scores =")) + 1
    rest[after_scores:after_scores] = causal
    rest.insert(-1, "weights = weights.to(v.dtype)")  # a line ana does not have
    return "\n".join(rest)


for table, comment in ((CAUSAL, "# lower triangle incl. diagonal"), (SDPA, "# step 1: scaled scores, then masks"),
                       (MHA_INIT, "# four projections"), (MHA_FORWARD, "# (batch, heads, length, head size)")):
    table["cleo"] = _disguise(table["ben"], comment)
    table["lu"] = _disguise(table["ana"], comment.replace("#", "# note:"))
SDPA["lu"] = _disguise(_lu_attention(SDPA["ana"]), "# attention")

IMPORTS = {"ivy": "from torch.nn.functional import scaled_dot_product_attention as attend\n"}
STUDENTS = ["ana", "ben", "cleo", "lu", "dev", "eve", "finn", "gus", "hana", "ivy", "jo", "kai"]


def _fill(cell_source: str, bodies: list[str | None]) -> str:
    """Replace the stubs of a released cell, in order, by `bodies` (None keeps a stub)."""
    parts = cell_source.split("# YOUR CODE HERE\n")
    out = [parts[0]]
    for body, rest in zip(bodies, parts[1:]):
        indent = out[-1][len(out[-1].rstrip(" ")):]
        stub, after = rest.split("raise NotImplementedError()", 1)
        if body is None:
            out.append(f"# YOUR CODE HERE\n{stub}raise NotImplementedError(){after}")
            continue
        lines = textwrap.dedent(body).strip("\n").splitlines()
        out.append("\n".join([lines[0], *(indent + line if line else "" for line in lines[1:])]) + after)
    return "".join(out)


def notebook(student: str) -> nbformat.NotebookNode:
    """The released attention notebook as `student` handed it in."""
    nb = nbformat.read(released_notebook("attention"), as_version=4)
    for cell in nb.cells:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        name = grading.get("grade_id")
        if cell.cell_type != "code" or not grading.get("solution"):
            continue
        if name == "causal_mask":
            cell.source = _fill(cell.source, [CAUSAL.get(student)])
        elif name == "scaled_dot_product_attention":
            cell.source = IMPORTS.get(student, "") + _fill(cell.source, [SDPA.get(student)])
        elif name == "MultiHeadAttention":
            cell.source = _fill(cell.source, [MHA_INIT.get(student), MHA_FORWARD.get(student)])
    return nb


def write_batch(folder: Path, students: list[str] = STUDENTS) -> dict[str, Path]:
    """Every student's notebook in nbgrader's layout under `folder`: student -> path."""
    paths = {}
    for student in students:
        path = folder / student / "attention" / "attention.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if student == "kai":
            path.write_text('{"cells": [{"cell_type": "code", "source": "def causal_mask(n')  # cut off mid-upload
        else:
            nbformat.write(notebook(student), path)
        paths[student] = path
    return paths
