"""Arch presets: the DeiT/ViT sizes and the foundation ViTs, and how an arch and a
model's arguments combine."""
from typing import Dict, Union

from .foundation import FOUNDATION_ARCHS

ARCH_SETTINGS: Dict[str, dict] = {
    # DeiT-Ti / S / B and ViT-L (AugReg): width, depth, heads
    'tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'small': dict(embed_dim=384, depth=12, num_heads=6),
    'base': dict(embed_dim=768, depth=12, num_heads=12),
    'large': dict(embed_dim=1024, depth=24, num_heads=16),
    **FOUNDATION_ARCHS,  # DINOv2, DINOv3, EVA-02: tokens, block and PE too
}
# What an arch leaves unset (the DeiT/ViT values).
ARCH_DEFAULTS = dict(patch_size=16, pretrain_size=224, class_token=False, num_register_tokens=0,
                     mlp_ratio=4., qkv_bias=True, layer_scale_init_value=None, norm_eps=1e-6,
                     mlp_layer='mlp', mlp_norm=False, mlp_align=0, pos_embed=None,
                     final_norm=True)


def resolve_arch(arch: Union[str, dict], overrides: dict) -> dict:
    """An ARCH_SETTINGS preset (or a dict with at least embed_dim, depth and
    num_heads) over :data:`ARCH_DEFAULTS`, with the non-None overrides applied; a
    ``pos_embed`` of the arch's own scheme is applied over the arch's options."""
    if not isinstance(arch, (str, dict)):
        raise TypeError(f'arch={arch!r} must be one of {sorted(ARCH_SETTINGS)} or a dict '
                        'with embed_dim, depth, num_heads')
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise ValueError(f'unknown arch {arch!r}; valid: {sorted(ARCH_SETTINGS)} '
                             'or a dict with embed_dim, depth, num_heads')
        settings = dict(ARCH_DEFAULTS, **ARCH_SETTINGS[arch])
    else:
        missing = {'embed_dim', 'depth', 'num_heads'} - set(arch)
        unknown = set(arch) - {'embed_dim', 'depth', 'num_heads'} - set(ARCH_DEFAULTS)
        if missing or unknown:
            raise ValueError(f'arch dict lacks {sorted(missing)} / has unknown keys '
                             f'{sorted(unknown)}; valid keys: embed_dim, depth, num_heads, '
                             f'{", ".join(ARCH_DEFAULTS)}')
        settings = dict(ARCH_DEFAULTS, **arch)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    arch_pe, pe = settings['pos_embed'], overrides.get('pos_embed')
    if (isinstance(arch_pe, dict) and isinstance(pe, dict)
            and pe.get('type') == arch_pe.get('type')):
        # the same scheme keeps the arch's layout (a reg4 table without a class slot)
        # and resizing options unless they are given
        overrides['pos_embed'] = dict(arch_pe, **pe)
    settings.update(overrides)
    return settings
