"""The contract between a vision transformer and its positional-encoding scheme.

A scheme is one module that the transformer consults at fixed sites, always in
this order, and never by name:

==================  ==========================================================
site                 call
==================  ==========================================================
once per forward    ``state = pe.prepare(grid, device, dtype)``
input embedding     ``x = pe.embed(x, state)``       (prefix tokens first)
per block input     ``h = pe.attention_input(norm1(x), i, state)``
inside attention    ``qk = pe.rotate(qk, i, state)``,
                    ``bias, gain = pe.logit_terms(i, attn_grid, state)`` and
                    ``bias += pe.query_terms(q, i, attn_grid, state)``
between blocks      ``x = pe.after_block(x, i, state)``
final norm          ``y = pe.final(norm(x), state)``
==================  ==========================================================

Every site is the identity here; a scheme overrides the one or two it acts at.
Tokens that join in front of the prefix tokens partway through the trunk (EoMT's
queries) are hidden from every site by the trunk (``Block.forward``), so a scheme
sees the same prefix and patch tokens whatever runs beside them.
A scheme also owns its weights' foreign layouts (``foreign_keys`` and
``convert_foreign``) and the views the analysis tools draw (``relative_maps``,
``frequencies``).
"""
import re
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import Callable, ClassVar, Dict, Optional, Pattern, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_block_list
from mmvitpe.weights.ownership import Claim, ForeignWeights

Grid = Tuple[int, int]


@dataclass
class PEState:
    """What a scheme precomputed for one forward pass.

    Attributes:
        grid: (rows, cols) of the patch-token grid.
        tensors: scheme-wide tensors by name: e.g. the resized table
            ``'pos'``, or RoPE's rotations (a tuple, one per block or one shared).
        per_block: tensors for one block each, by block index, e.g. LaPE's
            chain ``LN'_l(pos)``.
    """
    grid: Grid
    tensors: Dict[str, Union[Tensor, Tuple[Tensor, ...]]] = field(default_factory=dict)
    per_block: Dict[int, Tensor] = field(default_factory=dict)


class PositionalEncoding(ForeignWeights, BaseModule):
    """Base class of all schemes; every site is the identity.

    A scheme whose ``final`` site does something sets ``acts_at_final_norm``:
    a model without a final norm must reject it rather than leave it unused.
    A scheme defined without a class token (MPVG) sets ``supports_class_token``
    to False and rejects one at construction.

    Args:
        embed_dim: Token width D.
        num_heads: Attention heads per block.
        depth: Number of transformer blocks.
        num_prefix_tokens: Class (or other prefix) tokens in front of the
            patch tokens. Schemes act on patch tokens and leave prefix tokens
            alone unless they document otherwise.
        num_register_tokens: How many of the prefix tokens are register
            tokens (after the class token, as timm and DINOv2); no absolute
            table has a slot for them.
        pretrain_grid: Patch grid the model is (pre)trained at; learned tables
            are stored at this size and resized to other grids at run time.
        init_cfg: mmengine initialisation config.
        window_sizes: Each block's attention window side (0: global), for
            schemes whose tables are sized per attention grid. Default: all global.
        input_grid: Patch grid of the images the model is fine-tuned on (the
            global blocks' attention grid); default the pretraining grid.
    """

    acts_at_final_norm: bool = False
    supports_class_token: bool = True
    # source keys (relative to the ViT) of this scheme's tensors in released
    # checkpoints; ``convert_foreign`` translates them
    foreign_keys: ClassVar[Optional[Pattern]] = None
    # source buffers of this scheme that it recomputes (index tables, token
    # positions): dropped, with that reason, whatever the target scheme
    recomputed_keys: ClassVar[Optional[Pattern]] = None

    def __init__(self,
                 embed_dim: int,
                 num_heads: int,
                 depth: int,
                 num_prefix_tokens: int = 0,
                 pretrain_grid: Grid = (14, 14),
                 init_cfg: Optional[dict] = None,
                 num_register_tokens: int = 0,
                 window_sizes: Optional[Sequence[int]] = None,
                 input_grid: Optional[Grid] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.depth = depth
        self.num_prefix_tokens = num_prefix_tokens
        self.num_register_tokens = num_register_tokens
        self.pretrain_grid = tuple(pretrain_grid)
        self.window_sizes = tuple(window_sizes) if window_sizes is not None else (0,) * depth
        self.input_grid = tuple(input_grid) if input_grid is not None else self.pretrain_grid

    # ---- the sites -------------------------------------------------------
    def prepare(self, grid: Grid, device: torch.device,
                dtype: torch.dtype) -> PEState:
        return PEState(tuple(grid))

    def embed(self, x: Tensor, state: PEState) -> Tensor:
        return x

    def attention_input(self, x: Tensor, block: int, state: PEState) -> Tensor:
        return x

    def rotate(self, qk: Tensor, block: int, state: PEState) -> Tensor:
        """q and k, stacked as the qkv projection lays them out:
        (B, N, 2, heads, head_dim), N counting prefix tokens. One call (one
        kernel) serves both, and no head-major copy is made for it."""
        return qk

    def logit_terms(self, block: int, attn_grid: Grid, state: PEState,
                    num_prefix: int) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Additive bias and multiplicative gain on the scaled attention logits.

        Both are (heads, N, N) over the tokens of one attention call (a window
        or the whole grid, plus ``num_prefix`` prefix tokens), or None.
        """
        return None, None

    def query_terms(self, q: Tensor, block: int, attn_grid: Grid, state: PEState,
                    num_prefix: int) -> Optional[Tensor]:
        """An additive term on the scaled logits that depends on the queries
        ``q`` (B, heads, N, head_dim), after rotation: (B, heads, N, N), or None."""
        return None

    def after_block(self, x: Tensor, block: int, state: PEState) -> Tensor:
        return x

    def final(self, x: Tensor, state: PEState) -> Tensor:
        return x

    # ---- weight transfer ---------------------------------------------------
    def convert_foreign(self, key: str, value: Tensor
                        ) -> Union[Dict[str, Tensor], Claim, None]:
        """Translate a tensor matching ``foreign_keys`` into this scheme.

        A tensor of the scheme's own is returned as the checkpoint holds it, never
        filtered by shape nor cast: :func:`~mmvitpe.weights.transfer.remap` checks
        every claimed tensor against its target and names both shapes and dtypes.

        Args:
            key: The source key relative to the ViT, e.g. ``pos_embed`` or
                ``blocks.3.pe_norm.weight``.
            value: The source tensor.

        Returns:
            ``{key relative to this module: tensor}`` (resized if needed); a
            :class:`Claim` when part of a tensor has no value in the checkpoint
            (its ``invented``); or None when this instance has no use for it (a
            block it does not act in): the tensor is then reported as dropped.
        """
        return None

    def claim_foreign(self, key: str, value: Tensor, prefix: str) -> Optional[Claim]:
        """This scheme's tensors, converted; any other scheme's, dropped; a
        composite's member tensors (``<prefix>members.<i>.<name>``) by name."""
        name = type(self).__name__
        if self.recomputed_keys is not None and self.recomputed_keys.search(key):
            return Claim({}, f'buffer that {name} recomputes for every grid')
        member = composite_member_key(key, prefix)
        if member is not None:
            if member in self.state_dict():
                return Claim({member: value})
            return Claim({}, f'PE tensor of a composite member that {name} does not have')
        if self.foreign_keys is not None and self.foreign_keys.search(key):
            converted = self.convert_foreign(key, value)
            if isinstance(converted, Claim):
                return converted
            return Claim(converted) if converted else Claim({}, f'PE tensor that {name} '
                                                                'does not use')
        owners = layout_owners(key)
        if owners:
            return Claim({}, f'PE tensor that {name} does not use (layout of '
                             f'{", ".join(owners)})')
        return None

    def new_start_reason(self, name: str) -> Optional[str]:
        return (f'a parameter of {type(self).__name__}, which the checkpoint does not hold; '
                "starts at the scheme's initialisation")

    # ---- what the analysis tools draw -----------------------------------------
    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        """Per block, a (heads, 2h-1, 2w-1) map over relative offsets (rows: dy,
        columns: dx, from -(h-1) and -(w-1) up) of a learned relative term at
        ``grid`` or at the scheme's own table size; {} for schemes without one."""
        return {}

    def frequencies(self) -> Optional[Tensor]:
        """(2, depth or 1, heads or 1, pairs): x and y rotation frequency of each
        channel pair, for rotary schemes; None otherwise."""
        return None

    def stack_position(self, name: str) -> int:
        """Where parameter ``name`` (relative to this module) acts, for
        layer-wise lr decay: -1 before block 0 (shared tables), ``i`` for a
        per-block parameter (``<dict>.<i>.*``), ``depth`` after the last block."""
        parts = name.split('.')
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1

    # ---- helpers shared by the schemes ------------------------------------
    def _block_set(self, blocks: Optional[Sequence[int]], name: str) -> frozenset:
        """Validate a user's block list; None means every block, [] is refused."""
        return check_block_list(type(self).__name__, name, blocks, self.depth)

    def _split_prefix(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        n = self.num_prefix_tokens
        return x[:, :n], x[:, n:]

    def _inference_cached(self, key: tuple, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()``, memoised per key while autograd is off (inference).

        Training recomputes every time so gradients flow. A memo is valid while
        the parameters are the same tensors, unmodified: loading weights (an
        in-place copy bumps the version) or ``.to()`` / ``.half()`` (new
        storage) invalidates it. Off while compiling, exporting or tracing
        (:func:`memo_off`).
        """
        if torch.is_grad_enabled() or memo_off():
            return compute()
        cache = self.__dict__.setdefault('_inference_memo', {})
        versions = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in self.parameters())
        hit = cache.get(key)
        if hit is None or hit[0] != versions:
            if len(cache) >= 16:
                cache.clear()
            hit = cache[key] = (versions, compute())
        return hit[1]


def rotation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where rotary angles and rotations are computed: float32 for half-precision
    models (a bf16 angle is off by up to a radian at large positions), the model's
    own dtype from float32 up (a ``.double()`` model rotates in float64)."""
    return torch.promote_types(dtype, torch.float32)


def memo_off() -> bool:
    """Whether Python-side memos must step aside: under ``torch.compile`` /
    ``torch.export`` (dynamo would break the graph at ``data_ptr()`` and fake
    tensors have no storage), the ONNX exporters and ``torch.jit`` tracing (a
    memoised tensor would enter the graph as a constant of one grid)."""
    return (torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing())


def layout_owners(key: str) -> list:
    """The registered schemes whose ``foreign_keys`` or ``recomputed_keys`` match
    source key ``key``."""
    return sorted(name for name, scheme in POS_ENCODINGS.module_dict.items()
                  if any(keys is not None and keys.search(key)
                         for keys in (scheme.foreign_keys, scheme.recomputed_keys)))


def composite_member_key(key: str, prefix: str) -> Optional[str]:
    """``name`` for a composite's own key ``<prefix>members.<i>.<name>``, else None."""
    m = re.match(rf'^{re.escape(prefix)}members\.\d+\.(.+)$', key)
    return m.group(1) if m else None


def skip_leading(site: Callable, x: Tensor, queries: int, *args) -> Tensor:
    """``site(x, *args)`` on all tokens (dim 1) but the ``queries`` leading ones, which
    pass unchanged: how the trunk hides EoMT's queries from a token-wise site."""
    if not queries:
        return site(x, *args)
    return torch.cat([x[:, :queries], site(x[:, queries:], *args)], dim=1)


def pad_prefix(table: Tensor, num_prefix: int, value: float) -> Tensor:
    """Extend a (heads, N, N) logit term with ``value`` rows/cols for prefix tokens."""
    if num_prefix == 0:
        return table
    return F.pad(table, (num_prefix, 0, num_prefix, 0), value=value)


def eager_lru_cache(maxsize: int):
    """``functools.lru_cache``, bypassed while :func:`memo_off`: an export traces
    the Python with fake tensors, which would otherwise stay in the cache and
    come back to later eager calls."""
    def decorate(fn):
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(*args):
            return fn(*args) if memo_off() else cached(*args)
        return call
    return decorate


@eager_lru_cache(maxsize=32)
def relative_offsets(grid: Grid, device: torch.device) -> Tensor:
    """All distinct 2D offsets of an H x W grid: ((2H-1)(2W-1), 2) float (dx, dy),
    row-major over dy then dx, from -(H-1) to H-1 (memoised; read-only)."""
    h, w = grid
    dy, dx = torch.meshgrid(torch.arange(-(h - 1), h, device=device),
                            torch.arange(-(w - 1), w, device=device), indexing='ij')
    return torch.stack([dx, dy], -1).reshape(-1, 2).float()


def expand_relative_table(table: Tensor, grid: Grid, key_minus_query: bool) -> Tensor:
    """(heads, 2H-1, 2W-1) table over offsets -> (heads, N, N) over token pairs.

    Entry (i, j) is the table at offset ``pos_j - pos_i`` (key minus query) or
    ``pos_i - pos_j`` (Swin/BEiT), with the table's row/col 0 at offset -(H-1)/-(W-1).
    Two ``unfold``s give every query its H x W window of the table as a view,
    so there is no (N, N) index gather and its scatter-add backward.
    """
    heads, h, w = table.shape[0], grid[0], grid[1]
    if torch.jit.is_tracing():  # the TorchScript ONNX exporter cannot export this unfold
        ys, xs = (t.flatten() for t in torch.meshgrid(
            torch.arange(h, device=table.device), torch.arange(w, device=table.device),
            indexing='ij'))
        sign = 1 if key_minus_query else -1
        return table[:, sign * (ys[None] - ys[:, None]) + h - 1,
                     sign * (xs[None] - xs[:, None]) + w - 1]
    # windows[:, r, s, a, b] = table[:, r + a, s + b]
    windows = table.unfold(1, h, 1).unfold(2, w, 1)
    # key - query: r = H-1-y_i, a = y_j; query - key: r = y_i, a = H-1-y_j
    windows = windows.flip(1, 2) if key_minus_query else windows.flip(3, 4)
    return windows.reshape(heads, h * w, h * w)
