"""Multi-head self-attention with the positional-encoding hooks and windows.

Hand-written because timm's ``Attention``/``AttentionRope`` have no hook for a
multiplicative logit term (SP-SA) nor ViT-Adapter's windowing; it keeps timm's
parameter names (``qkv``, ``proj``) so timm/DeiT weights load unchanged.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..pos_encodings import Grid, PEState, PositionalEncoding
from ..pos_encodings.base import pad_prefix, skip_leading


# How a windowed block fills the grid up to whole windows: 'qkv' pads q, k and v
# with zeros (ViT-Adapter), 'tokens' pads the normed tokens with zeros before the qkv
# projection, so padded keys and values are the projection's biases (detectron2's ViTDet)
WINDOW_PADDINGS = ('qkv', 'tokens')


def window_partition(t: Tensor, grid: Grid, window: int,
                     fill: Optional[Tensor] = None) -> Tuple[Tensor, Grid]:
    """(B, heads, H*W, d) -> (B * nWin, heads, window^2, d), padded at the
    bottom/right to a multiple of ``window`` with zeros, or with ``fill``
    (heads, d) at every padded position."""
    b, heads, _, d = t.shape
    h, w = grid
    t = t.view(b, heads, h, w, d)
    pad_h, pad_w = -h % window, -w % window
    hp, wp = h + pad_h, w + pad_w
    if fill is None:
        t = F.pad(t, (0, 0, 0, pad_w, 0, pad_h))
    elif pad_h or pad_w:
        padded = fill.to(t.dtype)[None, :, None, None, :].expand(b, heads, hp, wp, d)
        t = torch.cat([torch.cat([t, padded[:, :, :h, w:]], dim=3), padded[:, :, h:]], dim=2)
    t = t.view(b, heads, hp // window, window, wp // window, window, d)
    t = t.permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, heads, window * window, d)
    return t, (hp, wp)


def window_reverse(t: Tensor, grid: Grid, padded: Grid, window: int, batch: int) -> Tensor:
    """Inverse of :func:`window_partition`, cropping the padding: -> (B, H*W, heads*d)."""
    _, heads, _, d = t.shape
    hp, wp = padded
    t = t.view(batch, hp // window, wp // window, heads, window, window, d)
    t = t.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, hp, wp, heads * d)
    return t[:, :grid[0], :grid[1]].reshape(batch, grid[0] * grid[1], heads * d)


class Attention(nn.Module):
    """Self-attention over the whole grid or over non-overlapping windows.

    Uses ``F.scaled_dot_product_attention`` unless the scheme contributes a
    multiplicative gain, which needs explicit logits.

    Args:
        dim: Token width.
        num_heads: Heads.
        qkv_bias: Bias in the qkv projection.
        window_size: 0 for global attention, else the window side in tokens.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout after the output projection.
        window_padding: One of :data:`WINDOW_PADDINGS`.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 window_size: int = 0, attn_drop: float = 0., proj_drop: float = 0.,
                 window_padding: str = 'qkv') -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.window_size = window_size
        self.window_padding = window_padding
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, block: int, pe: PositionalEncoding, state: PEState,
                queries: int = 0, attn_mask: Optional[Tensor] = None) -> Tensor:
        """``queries`` leading tokens are hidden from the PE: not rotated, no query
        term, zero bias and unit gain rows and columns (see ``Block.forward``)."""
        b, n, c = x.shape
        # split, not slicing: its backward concatenates instead of zero-filling twice
        qk, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).split((2, 1), dim=2)
        q, k = skip_leading(pe.rotate, qk, queries, block, state).permute(2, 0, 3, 1, 4).unbind(0)
        v = v.squeeze(2).transpose(1, 2)
        num_prefix = n - queries - state.grid[0] * state.grid[1]
        if self.window_size:
            if queries or attn_mask is not None:
                raise ValueError(f'block {block} attends within windows; query tokens and '
                                 'attention masks need a global block')
            out = self._attend_windows(q, k, v, block, pe, state, num_prefix)
        else:
            bias, gain = pe.logit_terms(block, state.grid, state, num_prefix)
            bias = _add(bias, pe.query_terms(q[:, :, queries:], block, state.grid, state,
                                             num_prefix))
            if queries:
                bias = None if bias is None else pad_prefix(bias, queries, 0.)
                gain = None if gain is None else pad_prefix(gain, queries, 1.)
            bias = _add(bias, attn_mask)
            out = self._attend(q, k, v, bias, gain).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))

    def _attend_windows(self, q: Tensor, k: Tensor, v: Tensor, block: int,
                        pe: PositionalEncoding, state: PEState, num_prefix: int) -> Tensor:
        """Patch tokens attend within their window and to every prefix token;
        prefix tokens (class, registers) attend to all tokens, as in a global
        block, so they keep gathering from the whole image.

        The scheme's logit terms are those of one window plus the prefix
        tokens. A prefix query's term towards a patch key does not depend on
        the patch (every scheme pads prefix rows with one value per head:
        neutral, or BEiT's class entry), so the window's first patch column
        stands for all patch keys.
        """
        b, heads, n, d = q.shape
        ws = self.window_size
        bias, gain = pe.logit_terms(block, (ws, ws), state, num_prefix)
        k_fill, v_fill = self._padding_fills()
        (qw, padded), (kw, _), (vw, _) = (
            window_partition(t[:, :, num_prefix:], state.grid, ws, fill)
            for t, fill in ((q, None), (k, k_fill), (v, v_fill)))
        window_terms = pe.query_terms(qw, block, (ws, ws), state, 0)
        if not num_prefix:
            out = self._attend(qw, kw, vw, _add(bias, window_terms), gain)
            return window_reverse(out, state.grid, padded, ws, b)
        rows, cols = state.grid
        windows = ((rows + ws - 1) // ws) * ((cols + ws - 1) // ws)  # per image; b may be 0
        kw, vw = (torch.cat([t[:, :, :num_prefix].repeat_interleave(windows, dim=0), w], dim=2)
                  for t, w in ((k, kw), (v, vw)))
        patch_rows = [None if t is None else t[:, num_prefix:] for t in (bias, gain)]
        if window_terms is not None:  # prefix keys get no query term
            patch_rows[0] = _add(patch_rows[0], F.pad(window_terms, (num_prefix, 0)))
        patches = window_reverse(self._attend(qw, kw, vw, *patch_rows), state.grid, padded, ws, b)
        prefix_rows = [None if t is None else torch.cat(
            [t[:, :num_prefix, :num_prefix],
             t[:, :num_prefix, num_prefix:num_prefix + 1].expand(-1, -1, n - num_prefix)], dim=2)
            for t in (bias, gain)]
        prefix = self._attend(q[:, :, :num_prefix], k, v, *prefix_rows)
        return torch.cat([prefix.transpose(1, 2).reshape(b, num_prefix, heads * d), patches],
                         dim=1)

    def _padding_fills(self) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """What padded keys and values hold: zeros ('qkv'), or what the projection
        makes of a zero token, its bias ('tokens')."""
        if self.window_padding == 'qkv' or self.qkv.bias is None:
            return None, None
        _, k_bias, v_bias = self.qkv.bias.view(3, self.num_heads, self.head_dim).unbind(0)
        return k_bias, v_bias

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, bias, gain) -> Tensor:
        drop = self.attn_drop if self.training else 0.
        if bias is not None:
            # 4-D: with a 3-D mask CPU SDPA drops its fused kernel (3.5x slower)
            bias = bias.to(q.dtype)
            bias = bias[None] if bias.dim() == 3 else bias
        if gain is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        # in place: one (B, heads, N, N) buffer fewer (autograd saves what it needs)
        logits = ((q * self.scale) @ k.transpose(-2, -1)).mul_(gain.to(q.dtype))
        if bias is not None:
            logits.add_(bias)
        attn = logits.softmax(dim=-1)
        attn = F.dropout(attn, drop) if drop else attn
        return attn @ v


def _add(bias: Optional[Tensor], term: Optional[Tensor]) -> Optional[Tensor]:
    """bias + term, where either may be None (no term)."""
    if term is None:
        return bias
    return term if bias is None else bias + term
