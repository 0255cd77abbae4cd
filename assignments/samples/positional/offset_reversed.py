"""relative_position_bias indexes by j - i instead of i - j (the bias of the mirrored offset)."""
import torch


def relative_position_bias(table, q_len, k_len):
    max_len = (table.shape[1] + 1) // 2
    if q_len > max_len or k_len > max_len:
        raise ValueError("q_len and k_len must be at most max_len")
    i = torch.arange(q_len)[:, None]
    j = torch.arange(k_len)[None, :]
    return table[:, j - i + max_len - 1]
