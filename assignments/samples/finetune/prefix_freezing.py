"""freeze_backbone keeps every parameter whose name merely starts with a listed name ('header' counts as 'head')."""


def freeze_backbone(model, trainable=("head",)):
    count = 0
    for name, parameter in model.named_parameters():
        keep = any(name.startswith(prefix) for prefix in trainable)
        parameter.requires_grad_(keep)
        count += parameter.numel() if keep else 0
    return count
