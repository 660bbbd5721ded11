"""EoMT, the encoder-only mask transformer (Kerssies et al., CVPR 2025), on the
PE-pluggable trunk.

The ViT runs as usual up to block ``depth - num_blocks``; there ``num_queries``
learned queries are put in front of the tokens (before the class and register
tokens) and run through the last ``num_blocks`` blocks. Before each of those
blocks, and after the last one, the final-normed queries predict class logits
(a linear layer, classes + 1 for "no object") and mask logits (a 3-layer MLP of
the queries against the patch tokens upscaled by :class:`ScaleBlock` s to stride
4). In training, each block's mask (resized to the patch grid, > 0) restricts
which patch tokens each query attends to; it is kept per query with a
probability that anneals from 1 to 0 over training (:func:`mask_probability`),
so that inference runs the plain ViT with no mask.

The queries are hidden from the positional encoding at every site (no table
slot, no rotation, zero bias rows and columns; see ``Block.forward``), so every
scheme and composite runs under EoMT unchanged.
"""
import math
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import check_bool, check_dict, check_int, check_int_list, \
    check_positive
from ..pos_encodings import PEState
from ..vit import PEViT
from ..vit.vision_transformer import tokens_to_map



class Predictions(NamedTuple):
    """EoMT's output: per prediction (the last one last) mask logits (B, Q, h, w)
    and class logits (B, Q, classes + 1); the input's (H, W), and the (H, W)
    pixels the mask logits cover: the input with its last row and column of
    patches filled up to whole patches (with zeros)."""
    mask_logits: List[Tensor]
    class_logits: List[Tensor]
    image_size: Tuple[int, int]
    padded_size: Tuple[int, int]


def mask_probability(step: int, start: int, end: int, power: float) -> float:
    """EoMT's annealing of one block's masked attention: 1 before ``start``,
    ``(1 - (step - start) / (end - start)) ** power`` up to ``end``, 0 after."""
    if step < start:
        return 1.
    if step >= end:
        return 0.
    return (1. - (step - start) / (end - start)) ** power


class ScaleBlock(nn.Module):
    """2x upscaling: ConvTranspose 2x2/2, GELU, depthwise 3x3 (no bias), LayerNorm2d
    (EoMT's ``ScaleBlock``; key names as its checkpoints)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.norm = LayerNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv2(self.act(self.conv1(x))))


@MODELS.register_module()
class EoMT(PEViT):
    """Learned queries in the last blocks of a ViT, with masked attention.

    Called on a (normalised) image of any size, returns :class:`Predictions`:
    lists of (B, Q, H/4, W/4) mask and (B, Q, num_classes + 1) class logits. In
    training (with ``masked_attn``) one per block of the last ``num_blocks``
    (before it) and one after the last block, which is last; in eval mode the
    last only.
    The mask logits' stride is ``patch_size / 2 ** max(1, log2(patch) - 2)``
    (4 for patch 16, 7 for patch 14).

    Args:
        num_classes: Classes (the class head has one more: no object).
        num_queries: Learned queries (EoMT: 100 for ADE20K semantic, 200 for
            COCO).
        num_blocks: Last blocks the queries run through (EoMT: 4).
        masked_attn: Restrict each query to its predicted mask in training.
        mask_annealing: With ``masked_attn``, required: ``dict(start_iters=[..],
            end_iters=[..], power=0.9)``, one start and end per block of the last
            ``num_blocks`` (EoMT's ``attn_mask_annealing_start_steps`` /
            ``end_steps``, in iterations). ``EoMTMaskAnnealingHook`` applies
            it at each training iteration (:meth:`set_step`).
        **kwargs: The trunk's arguments (see :class:`PEViT`): ``arch``,
            ``pos_embed``, ``init_cfg`` (the ViT's weights from any supported
            layout, or a whole EoMT checkpoint), ... The final norm is required
            (the heads read the final-normed tokens); the last ``num_blocks``
            blocks must attend globally.
    """
    # what EoMT adds to the ViT: queries and heads, none of them in a ViT checkpoint
    HEAD_PARTS = ('q', 'class_head', 'mask_head', 'upscale')

    def __init__(self, num_classes: int, num_queries: int = 100, num_blocks: int = 4,
                 masked_attn: bool = True, mask_annealing: Optional[dict] = None,
                 **kwargs) -> None:
        owner = type(self).__name__
        if 'out_indices' in kwargs:
            raise TypeError(f'{owner} predicts from its last block; out_indices is '
                            "PEViT's read-out")
        super().__init__(**kwargs)
        self.num_classes = check_int(owner, 'num_classes', num_classes)
        self.num_queries = check_int(owner, 'num_queries', num_queries)
        self.num_blocks = check_int(owner, 'num_blocks', num_blocks)
        if self.num_blocks > self.depth:
            raise ValueError(f'{owner}: num_blocks={num_blocks} is more than the trunk\'s '
                             f'{self.depth} blocks')
        self.masked_attn = check_bool(owner, 'masked_attn', masked_attn)
        if self.norm is None:
            raise ValueError(f'{owner} predicts from the final-normed tokens: the trunk needs '
                             'final_norm=True')
        first = self.depth - self.num_blocks
        windowed = [i for i in range(first, self.depth) if self.window_sizes[i]]
        if windowed:
            raise ValueError(f'{owner}: blocks {windowed} attend within windows, but the '
                             f'queries run through blocks {first}..{self.depth - 1}, which '
                             'must attend globally')
        self.annealing = self._check_annealing(mask_annealing)
        self._step: Optional[int] = None

        dim = self.embed_dim
        self.q = nn.Embedding(self.num_queries, dim)
        self.class_head = nn.Linear(dim, self.num_classes + 1)
        self.mask_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim),
                                       nn.GELU(), nn.Linear(dim, dim))
        self.upscale = nn.Sequential(*[ScaleBlock(dim) for _ in range(
            max(1, int(math.log2(self.patch_size)) - 2))])
        # per block of the last num_blocks; set by set_step (training state, not weights)
        self.register_buffer('attn_mask_probs', torch.ones(self.num_blocks), persistent=False)

    def _check_annealing(self, annealing: Optional[dict]) -> Optional[dict]:
        owner = type(self).__name__
        if not self.masked_attn:
            if annealing is not None:
                raise ValueError(f'{owner}: mask_annealing is given but masked_attn=False')
            return None
        if annealing is None:
            raise ValueError(f'{owner}: masked_attn=True needs mask_annealing=dict(start_iters='
                             '[...], end_iters=[...], power=0.9), one start and end per block '
                             f'of the last {self.num_blocks}; or masked_attn=False')
        check_dict(owner, 'mask_annealing', annealing, needs_type=False)
        unknown = set(annealing) - {'start_iters', 'end_iters', 'power'}
        if unknown or not {'start_iters', 'end_iters'} <= set(annealing):
            raise ValueError(f'{owner}: mask_annealing keys {sorted(annealing)}; valid: '
                             'start_iters, end_iters (required), power')
        starts, ends = (check_int_list(owner, f'mask_annealing.{k}', annealing[k])
                        for k in ('start_iters', 'end_iters'))
        for name, values in (('start_iters', starts), ('end_iters', ends)):
            if len(values) != self.num_blocks:
                raise ValueError(f'{owner}: mask_annealing.{name}={values} needs one entry per '
                                 f'block of the last num_blocks={self.num_blocks}')
        bad = [(s, e) for s, e in zip(starts, ends) if e <= s]
        if bad:
            raise ValueError(f'{owner}: mask_annealing ends {bad} must come after their '
                             'starts (start_iters[i] < end_iters[i])')
        power = check_positive(owner, 'mask_annealing.power', annealing.get('power', 0.9))
        return dict(start_iters=starts, end_iters=ends, power=power)

    def set_step(self, step: int) -> None:
        """Set each block's mask probability for training iteration ``step``."""
        step = check_int(type(self).__name__, 'step', step, minimum=0)
        if self.annealing is None:
            raise ValueError(f'{type(self).__name__} has no masked attention to anneal '
                             '(masked_attn=False)')
        probs = [mask_probability(step, s, e, self.annealing['power']) for s, e in
                 zip(self.annealing['start_iters'], self.annealing['end_iters'])]
        self.attn_mask_probs.copy_(torch.tensor(probs))
        self._step = step

    # ---- weights -----------------------------------------------------------------
    def new_start_reason(self, name: str) -> Optional[str]:
        if name.split('.')[0] in self.HEAD_PARTS:
            return ('a part of EoMT (queries and heads), which ViT checkpoints do not hold; '
                    'starts at its initialisation')
        return super().new_start_reason(name)

    # ---- forward ---------------------------------------------------------------------
    def forward(self, img: Tensor) -> Predictions:
        masked = self.training and self.masked_attn
        if masked and self._step is None:
            raise RuntimeError(
                f'{type(self).__name__} trains with masked attention, annealed per iteration: '
                "add custom_hooks=[dict(type='mmvitpe.EoMTMaskAnnealingHook')] to the config, "
                'or call set_step(iteration) before each training step')
        return self.forward_predictions(img, every_block=masked, masked=masked)

    def forward_predictions(self, img: Tensor, every_block: bool, masked: bool) -> Predictions:
        """Predictions before each of the last ``num_blocks`` blocks (if
        ``every_block``) and after the last; ``masked``: attention masked with
        the probabilities ``attn_mask_probs``."""
        x, state = self.embed(img)
        first = self.depth - self.num_blocks
        x = self.forward_blocks(x, state, 0, first)
        queries = self.q.weight.to(x.dtype)[None].expand(x.shape[0], -1, -1)
        x = torch.cat([queries, x], dim=1)
        mask_logits, class_logits = [], []
        for i in range(first, self.depth):
            attn_mask = None
            if every_block or masked:
                masks, classes = self._predict(x, state)
                if every_block:
                    mask_logits.append(masks)
                    class_logits.append(classes)
                if masked:
                    attn_mask = self._attn_mask(masks, state, x.shape[1],
                                                self.attn_mask_probs[i - first])
            x = self.forward_blocks(x, state, i, i + 1, self.num_queries, attn_mask)
        masks, classes = self._predict(x, state)
        rows, cols = state.grid
        return Predictions(mask_logits + [masks], class_logits + [classes],
                           tuple(img.shape[-2:]), (rows * self.patch_size, cols * self.patch_size))

    def _predict(self, x: Tensor, state: PEState) -> Tuple[Tensor, Tensor]:
        x = self.finalize(x, state, self.num_queries)
        q = x[:, :self.num_queries]
        patches = tokens_to_map(x[:, self.num_queries + self.num_prefix_tokens:], state.grid)
        masks = torch.einsum('bqc,bchw->bqhw', self.mask_head(q), self.upscale(patches))
        return masks, self.class_head(q)

    # outside torch.compile's graph (as EoMT's): the probability decides the branch
    @torch.compiler.disable
    def _attn_mask(self, mask_logits: Tensor, state: PEState, num_tokens: int,
                   prob) -> Optional[Tensor]:
        """Additive (B, 1, N, N) logit mask: -inf where a query may not see a patch
        token (its mask logit, bilinear at the patch grid, <= 0); each query's
        mask kept with probability ``prob`` (None when none is kept)."""
        prob = float(prob)
        if prob <= 0:
            return None
        keep = F.interpolate(mask_logits, state.grid, mode='bilinear') > 0
        keep = keep.flatten(2)
        if prob < 1:  # EoMT's draw: a query's mask is dropped where rand > prob
            dropped = torch.rand(keep.shape[:2], device=keep.device) > prob
            keep = keep | dropped[..., None]
        mask = mask_logits.new_zeros(keep.shape[0], 1, num_tokens, num_tokens)
        mask[:, 0, :self.num_queries, num_tokens - keep.shape[2]:].masked_fill_(~keep,
                                                                             float('-inf'))
        return mask
