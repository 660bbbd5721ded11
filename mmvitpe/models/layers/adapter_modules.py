"""The building blocks of ViT-Adapter (Chen et al., ICLR 2023).

Names follow the original implementation (czczup/ViT-Adapter) so that its
checkpoints map over by renaming only. Unlike the original, nothing assumes a
patch size of 16, a 1:4:16 token ratio between the levels, or SyncBN.
"""
import re
from typing import List, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from timm.layers import DropPath
from torch import Tensor, nn

from mmvitpe.weights.ownership import Claim, ForeignWeights
from .deformable_attention import DeformableAttention

Shape = Tuple[int, int]


class DeformInputs:
    """Reference points and level layout for one deformable-attention call.

    Queries are the tokens of ``query_shapes`` grids (concatenated, row-major),
    keys the tokens of ``key_shapes``. Reference points are the query pixel
    centres in (x, y) order, normalised to [0, 1] over the area the keys span,
    shared by all key levels. ``query_extent`` / ``key_extent`` are the (rows,
    cols) pixels the query and key grids span, when they differ: a ViT grid of
    14-px patches over a 32-multiple image spans a little more. They are ints
    (symbolic under dynamic shapes), as is ``spatial_shapes``, a list of int
    pairs: no Python float or tensor is made of a size, which keeps
    ``torch.compile`` from specialising on it.
    """

    def __init__(self, query_shapes: Sequence[Shape], key_shapes: Sequence[Shape],
                 device: torch.device, query_extent: Optional[Shape] = None,
                 key_extent: Optional[Shape] = None) -> None:
        points = []
        for h, w in query_shapes:
            # pixel centres (i + 1/2) / n: arange (not linspace) takes a symbolic length
            ys, xs = ((torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n
                      for n in (h, w))
            if query_extent is not None:
                ys = ys * query_extent[0] / key_extent[0]
                xs = xs * query_extent[1] / key_extent[1]
            ys, xs = torch.meshgrid(ys, xs, indexing='ij')
            points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
        self.reference_points = torch.cat(points)[None, :, None]  # (1, Nq, 1, 2)
        self.spatial_shapes = [tuple(s) for s in key_shapes]


class DWConv(nn.Module):
    """One depthwise 3x3 conv applied to each level of a multi-level token sequence."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: Tensor, levels: Sequence[Shape]) -> Tensor:
        b, _, c = x.shape
        outs, start = [], 0
        for h, w in levels:
            # tokens are a channels-last map already: no copy in, none out
            part = x[:, start:start + h * w].view(b, h, w, c).permute(0, 3, 1, 2)
            outs.append(self.dwconv(part).flatten(2).transpose(1, 2))
            start += h * w
        return torch.cat(outs, dim=1)


class ConvFFN(nn.Module):
    """fc1 -> depthwise conv per level -> GELU -> fc2 (the extractor's FFN)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, levels: Sequence[Shape]) -> Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), levels)))
        return self.drop(self.fc2(x))


def _checkpointed(fn, with_cp: bool, *args):
    if with_cp and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class Injector(nn.Module):
    """Spatial features -> ViT tokens: ``x + gamma * MSDA(LN(x), LN(c))``.

    ``gamma`` starts at ``init_values`` (0: the pretrained ViT is untouched at
    step 0).
    """

    def __init__(self, dim: int, num_heads: int, n_points: int, n_levels: int,
                 deform_ratio: float, init_values: float, with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DeformableAttention(dim, num_heads, n_levels, n_points, deform_ratio)
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, query: Tensor, feat: Tensor, inputs: DeformInputs) -> Tensor:
        def inner(query, feat):
            attn = self.attn(self.query_norm(query), self.feat_norm(feat),
                             inputs.reference_points, inputs.spatial_shapes)
            return query + self.gamma * attn
        return _checkpointed(inner, self.with_cp, query, feat)


class Extractor(nn.Module):
    """ViT tokens -> spatial features: ``c + MSDA(LN(c), LN(x))``, then ``c + ConvFFN(LN(c))``."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float,
                 with_cffn: bool, cffn_ratio: float, drop: float = 0., drop_path: float = 0.,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DeformableAttention(dim, num_heads, 1, n_points, deform_ratio)
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop)
            self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
            self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        else:
            self.ffn = None

    def forward(self, query: Tensor, feat: Tensor, inputs: DeformInputs,
                levels: Sequence[Shape]) -> Tensor:
        def inner(query, feat):
            query = query + self.attn(self.query_norm(query), self.feat_norm(feat),
                                      inputs.reference_points, inputs.spatial_shapes)
            if self.ffn is not None:
                query = query + self.drop_path(self.ffn(self.ffn_norm(query), levels))
            return query
        return _checkpointed(inner, self.with_cp, query, feat)


class InteractionBlock(nn.Module):
    """One injector before a group of ViT blocks and extractor(s) after it.

    The ViT blocks themselves belong to the backbone, which runs them between
    :meth:`inject` and :meth:`extract`. Without the injector (``inject=False``:
    DINOv3's extractor-only interactions) :meth:`inject` is the identity.
    """

    def __init__(self, dim: int, num_heads: int, n_points: int, n_levels: int,
                 deform_ratio: float, init_values: float, with_cffn: bool,
                 cffn_ratio: float, drop: float, drop_path: float,
                 extra_extractors: int = 0, with_cp: bool = False,
                 inject: bool = True) -> None:
        super().__init__()
        self.injector = (Injector(dim, num_heads, n_points, n_levels, deform_ratio,
                                  init_values, with_cp) if inject else None)
        extractor_args = (dim, num_heads, n_points, deform_ratio, with_cffn, cffn_ratio,
                          drop, drop_path, with_cp)
        self.extractor = Extractor(*extractor_args)
        self.extra_extractors = (nn.Sequential(*[Extractor(*extractor_args)
                                                 for _ in range(extra_extractors)])
                                 if extra_extractors else None)

    def inject(self, x: Tensor, c: Tensor, inputs: DeformInputs) -> Tensor:
        return self.injector(x, c, inputs) if self.injector is not None else x

    def extract(self, c: Tensor, x: Tensor, inputs: DeformInputs,
                levels: Sequence[Shape]) -> Tensor:
        c = self.extractor(c, x, inputs, levels)
        for extractor in self.extra_extractors or ():
            c = extractor(c, x, inputs, levels)
        return c


def _conv_memory_format(img: Tensor) -> torch.memory_format:
    """The spatial prior module's conv layout: channels-last on CUDA (cuDNN's
    preferred layout under autocast), the default on CPU. On CPUs channels-last
    made the stem 1.4-1.8x faster on one and 1.55x slower on another (an AVX2
    AMD EPYC); no CPU flag told the two apart, so CPUs keep the default."""
    return torch.channels_last if img.device.type == 'cuda' else torch.contiguous_format


class SpatialPriorModule(ForeignWeights, nn.Module):
    """Conv stem giving the spatial prior at strides 4, 8, 16 and 32.

    stem: 3 conv3x3 (first stride 2) + max-pool -> c1; conv2..conv4: stride-2
    conv3x3 -> c2..c4; fc1..fc4: 1x1 projections to ``embed_dim``.

    Args:
        inplanes: Width of the stem (ViT-Adapter's ``conv_inplane``).
        embed_dim: Output width.
        in_channels: Image channels.
        norm_cfg: Norm of the conv layers (BN, SyncBN, GN, ...).
    """

    def __init__(self, inplanes: int, embed_dim: int, in_channels: int = 3,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')

        def conv(cin, cout, stride):
            return ConvModule(cin, cout, 3, stride=stride, padding=1, bias=False,
                              norm_cfg=norm_cfg, act_cfg=dict(type='ReLU'))
        self.stem = nn.Sequential(conv(in_channels, inplanes, 2), conv(inplanes, inplanes, 1),
                                  conv(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = conv(inplanes, 2 * inplanes, 2)
        self.conv3 = conv(2 * inplanes, 4 * inplanes, 2)
        self.conv4 = conv(4 * inplanes, 4 * inplanes, 2)
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    # the original's plain Sequentials: stem (conv, norm, ReLU) x 3 + pool, convK (conv, norm, ReLU)
    _ORIGINAL_STEM = {'0': ('0', 'conv'), '1': ('0', 'norm'), '3': ('1', 'conv'),
                      '4': ('1', 'norm'), '6': ('2', 'conv'), '7': ('2', 'norm')}

    def claim_foreign(self, key: str, value: Tensor, prefix: str) -> Optional[Claim]:
        """The original ViT-Adapter's ``stem.<i>.*`` / ``conv<k>.<0|1>.*`` keys."""
        if not prefix or not key.startswith(prefix):
            return None
        name = key[len(prefix):]
        norm = self.stem[0].norm_name
        m = re.match(r'^stem\.(\d)\.(.+)$', name)
        if m and m.group(1) in self._ORIGINAL_STEM:
            index, part = self._ORIGINAL_STEM[m.group(1)]
            return Claim({f'stem.{index}.{"conv" if part == "conv" else norm}.{m.group(2)}': value})
        m = re.match(r'^conv([234])\.([01])\.(.+)$', name)
        if m:
            return Claim({f'conv{m.group(1)}.{"conv" if m.group(2) == "0" else norm}.'
                          f'{m.group(3)}': value})
        return None

    def forward(self, img: Tensor) -> List[Tensor]:
        c1 = self.stem(img.contiguous(memory_format=_conv_memory_format(img)))
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return [self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)]
