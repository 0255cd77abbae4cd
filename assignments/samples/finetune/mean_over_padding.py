"""mean_pool averages over all T positions, padding included."""


def mean_pool(hidden, attention_mask):
    return (hidden * attention_mask[..., None].to(hidden.dtype)).sum(1) / hidden.shape[1]
