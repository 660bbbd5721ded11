"""Behaviour of every positional-encoding scheme inside the ViT core."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from mmvitpe.models import PEViT
from mmvitpe.models.pos_encodings import SPSA, build_pos_encoding
from mmvitpe.registry import POS_ENCODINGS

from helpers import rotate_head_major

SCHEMES = sorted(POS_ENCODINGS.module_dict)
REAL_SCHEMES = [s for s in SCHEMES if s != 'NoPE']
GRIDS = [(7, 11), (14, 14), (32, 20)]


def vit(scheme, class_token=False, pe_args=None, **kw):
    cfg = dict(embed_dim=32, depth=3, num_heads=4, patch_size=4, pretrain_size=56,
               class_token=class_token, pos_embed=dict(type=scheme, **(pe_args or {})))
    cfg.update(kw)
    return PEViT(**cfg)


def valid_combinations():
    for scheme in SCHEMES:
        for class_token in (False, True):
            if class_token and not POS_ENCODINGS.module_dict[scheme].supports_class_token:
                continue
            yield scheme, class_token


def with_registers():
    """Each scheme with 1 class + 4 register tokens (4 registers alone without class token)."""
    for scheme in SCHEMES:
        yield scheme, POS_ENCODINGS.module_dict[scheme].supports_class_token, 4


@pytest.mark.parametrize('scheme,class_token,registers',
                         [(s, c, 0) for s, c in valid_combinations()] + list(with_registers()))
def test_any_grid_forward_backward(scheme, class_token, registers, device):
    model = vit(scheme, class_token, num_register_tokens=registers).to(device)
    for grid in GRIDS:
        img = torch.randn(2, 3, grid[0] * 4, grid[1] * 4, device=device, requires_grad=True)
        tokens, out_grid = model.forward_features(img)
        assert out_grid == grid
        assert tokens.shape == (2, grid[0] * grid[1] + class_token + registers, 32)
        model(img)[0].square().sum().backward()
        assert torch.isfinite(img.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('scheme,class_token', list(valid_combinations()))
def test_autocast_is_finite_and_close(scheme, class_token, dtype, device):
    model = vit(scheme, class_token).to(device).eval()
    qkv_dtypes = []
    model.blocks[-1].attn.qkv.register_forward_hook(
        lambda m, args, out: qkv_dtypes.append(out.dtype))
    for grid in GRIDS:
        img = torch.randn(1, 3, grid[0] * 4, grid[1] * 4, device=device)
        with torch.no_grad():
            ref = model(img)[0]
            with torch.autocast(device, dtype=dtype):
                low = model(img)[0]
        assert qkv_dtypes[-2:] == [torch.float32, dtype]  # the blocks ran in low precision
        assert torch.isfinite(low).all()
        assert torch.allclose(low.float(), ref, atol=0.1, rtol=0.1)
    with torch.autocast(device, dtype=dtype):
        out = model(img)[0]
    out.float().square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('scheme', SCHEMES)
def test_gradient_checkpointing_matches(scheme, device):
    model = vit(scheme).to(device)
    img = torch.randn(2, 3, 28, 36, device=device)
    model(img)[0].sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.with_cp = True
    model(img)[0].sum().backward()
    for n, p in model.named_parameters():
        if n in ref:
            torch.testing.assert_close(p.grad, ref[n], msg=n)


FUSED_SDPA = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
              SDPBackend.CUDNN_ATTENTION]  # all but the math path


class _CountSDPA(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is F.scaled_dot_product_attention
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
@pytest.mark.parametrize('scheme', SCHEMES)
def test_attention_runs_a_fused_sdpa_kernel(scheme, train, dtype, device):
    """Every block without a multiplicative gain calls SDPA, and SDPA runs with
    its math path ruled out (``sdpa_kernel``), so a fused kernel ran. The one
    exception: in CPU training a learned bias (or a term of the queries) needs
    its gradient, for which CPU SDPA has no fused kernel, so there the fused-only
    call must fail."""
    model = vit(scheme).to(device).train(train)
    grid = (7, 11)  # 77 tokens: no multiple of a kernel's tile
    img = torch.randn(1, 3, grid[0] * 4, grid[1] * 4, device=device)
    with torch.set_grad_enabled(train):
        state = model.pe.prepare(grid, torch.device(device), torch.float32)
        terms = [model.pe.logit_terms(b, grid, state, 0) for b in range(model.depth)]
        q = torch.randn(1, 4, 77, 8, device=device, requires_grad=train)
        query_terms = [model.pe.query_terms(q, b, grid, state, 0) for b in range(model.depth)]
    sdpa_blocks = [bias if query is None else query
                   for (bias, gain), query in zip(terms, query_terms) if gain is None]
    needs_math = device == 'cpu' and any(bias is not None and bias.requires_grad
                                         for bias in sdpa_blocks)

    def step():
        with torch.set_grad_enabled(train), sdpa_kernel(FUSED_SDPA), torch.autocast(
                device, dtype=dtype, enabled=dtype != torch.float32):
            out = model(img)[0]
            if train:
                out.float().sum().backward()
    if needs_math:
        with pytest.raises(RuntimeError, match='No available kernel'):
            step()
        return
    with _CountSDPA() as count:
        step()
    assert count.calls == len(sdpa_blocks)


def _patch_permutation_gap(model, grid=(6, 7)):
    """How far the token outputs are from permuting along with the input patches."""
    model.eval()
    x = torch.randn(1, grid[0] * grid[1], 32)
    perm = torch.randperm(x.shape[1])
    x = torch.cat([torch.zeros(1, model.num_prefix_tokens, 32), x], 1) if model.num_prefix_tokens else x
    idx = torch.cat([torch.arange(model.num_prefix_tokens), perm + model.num_prefix_tokens])

    def run(tokens):
        state = model.pe.prepare(grid, tokens.device, tokens.dtype)
        return model.finalize(model.forward_blocks(model.pe.embed(tokens, state), state), state)
    with torch.no_grad():
        return (run(x)[:, idx] - run(x[:, idx])).abs().max().item()


def test_no_pe_is_permutation_equivariant():
    assert _patch_permutation_gap(vit('NoPE')) < 1e-5


@pytest.mark.parametrize('scheme', REAL_SCHEMES)
def test_real_schemes_break_permutation_equivariance(scheme):
    model = vit(scheme)
    # Non-trivial weights: init attention is near-uniform (logits ~ 0) and the
    # neutral-start schemes (zero bias, unit prior) would hide any effect.
    for name, p in model.named_parameters():
        if name.startswith(('pe.tables', 'pe.priors')) or name.endswith('attn.qkv.weight'):
            p.data.normal_(0, 0.5)
    assert _patch_permutation_gap(model) > 1e-2


@pytest.mark.parametrize('scheme', ['RelPosBias', 'SPSA', 'ALiBi2D', 'LookHere'])
def test_logit_terms_depend_only_on_offset(scheme):
    pe = build_pos_encoding(dict(type=scheme), embed_dim=32, num_heads=4, depth=2,
                            pretrain_grid=(5, 5))
    for p in pe.parameters():
        p.data.normal_(0, 1)
    grid = (6, 9)
    state = pe.prepare(grid, torch.device('cpu'), torch.float32)
    bias, gain = pe.logit_terms(1, grid, state, 0)
    term = (bias if bias is not None else gain).view(4, 6, 9, 6, 9)
    # shifting query and key by the same (dy, dx) leaves the term unchanged
    torch.testing.assert_close(term[:, 1:, 2:, 1:, 2:], term[:, :-1, :-2, :-1, :-2])
    assert term[term.isfinite()].std() > 0.1  # LookHere masks with -inf


@pytest.mark.parametrize('table_grid', [(5, 7), (4, 4)])
def test_relative_bias_follows_the_swin_index_and_timm_resizing(table_grid):
    """At its own grid the table is gathered with Swin/BEiT's index; for another
    grid it is first resized as timm resizes a (square) Swin table."""
    from timm.layers import gen_relative_position_index
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table_simple
    pe = build_pos_encoding(dict(type='RelPosBias'), embed_dim=32, num_heads=4, depth=1,
                            pretrain_grid=table_grid)
    pe.tables['0'].data.normal_()
    state = pe.prepare((5, 7), torch.device('cpu'), torch.float32)
    bias, _ = pe.logit_terms(0, (5, 7), state, 0)
    table = pe.tables['0'].detach()
    if table_grid != (5, 7):
        table = resize_rel_pos_bias_table_simple(table, (5, 7), (9 * 13, 4))
    torch.testing.assert_close(bias, table[gen_relative_position_index((5, 7))].permute(2, 0, 1))


@pytest.mark.parametrize('scheme', ['RoPEAxial', 'RoPEMixed', 'RoPEDINOv3', 'RoPEEVA02'])
def test_rope_scores_depend_only_on_offset(scheme):
    pe = build_pos_encoding(dict(type=scheme), embed_dim=32, num_heads=2, depth=2,
                            pretrain_grid=(5, 5))
    grid = (4, 7)
    state = pe.prepare(grid, torch.device('cpu'), torch.float32)
    q = torch.randn(1, 2, 1, 16).expand(1, 2, 28, 16)
    k = torch.randn(1, 2, 1, 16).expand(1, 2, 28, 16)
    rq, rk = rotate_head_major(pe, q, k, 1, state)
    scores = (rq @ rk.transpose(-1, -2)).view(2, 4, 7, 4, 7)
    torch.testing.assert_close(scores[:, 1:, 3:, 1:, 3:], scores[:, :-1, :-3, :-1, :-3])
    assert scores.std() > 1e-2
    # rotation preserves norms
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))


# not RoPEDINOv3 / RoPEEVA02: their angle per patch scales with the grid side
@pytest.mark.parametrize('scheme', ['RoPEAxial', 'RoPEMixed', 'RelPosBias', 'SPSA', 'ALiBi2D',
                                    'LookHere'])
def test_relative_schemes_stay_relative_in_windows(scheme):
    """All blocks windowed (2x2 tokens): cropping one window row off the top
    leaves every other token's output unchanged, wherever it sits absolutely."""
    model = vit(scheme, window_size=2, window_block_indexes=(0, 1, 2)).eval()
    with torch.no_grad():
        for p in model.pe.parameters():
            p.normal_()
        img = torch.randn(1, 3, 4 * 8, 4 * 6)
        full = model.forward_features(img)[0].view(1, 8, 6, 32)
        cropped = model.forward_features(img[..., 8:, :])[0].view(1, 6, 6, 32)
    torch.testing.assert_close(full[:, 2:], cropped)


def test_tokens_stay_token_major_through_the_blocks():
    # the patch conv is channel-major; carried into the residual stream, that
    # layout made every norm and linear copy its input
    model = vit('LearnedPE')
    x, state = model.embed(torch.randn(1, 3, 4 * 5, 4 * 7))
    assert x.is_contiguous()
    assert model.forward_blocks(x, state).is_contiguous()


@pytest.mark.parametrize('scheme', ['RoPEAxial', 'RoPEMixed', 'RoPEDINOv3', 'RoPEEVA02'])
def test_rope_leaves_the_class_token_unrotated(scheme):
    pe = build_pos_encoding(dict(type=scheme), embed_dim=32, num_heads=2, depth=2,
                            num_prefix_tokens=1)
    state = pe.prepare((3, 4), torch.device('cpu'), torch.float32)
    q, k = torch.randn(2, 1, 2, 13, 16).unbind(0)
    rq, rk = rotate_head_major(pe, q, k, 1, state)
    torch.testing.assert_close(rq[:, :, 0], q[:, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(rk[:, :, 0], k[:, :, 0], rtol=0, atol=0)
    assert (rq[:, :, 2:] - q[:, :, 2:]).abs().max() > 1e-2  # patches (but the origin) turn


def test_relative_schemes_extend_to_larger_windows_without_new_parameters():
    model = vit('RelPosBias', window_size=5, window_block_indexes=(0, 2))
    n_params = sum(p.numel() for p in model.parameters())
    assert model(torch.randn(1, 3, 4 * 13, 4 * 9))[0].shape == (1, 32, 13, 9)
    assert sum(p.numel() for p in model.parameters()) == n_params


@pytest.mark.parametrize('scheme,pe_args', [('SPSA', {}), ('SPSA', {'hidden': 32}),
                                            ('RelPosBias', {})])
def test_neutral_at_init(scheme, pe_args):
    """SP-SA (prior = 1) and relative bias (zero tables) start as plain attention."""
    model = vit(scheme, pe_args=pe_args, window_size=4, window_block_indexes=(1,))
    plain = vit('NoPE', window_size=4, window_block_indexes=(1,))
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith('pe.') for k in unexpected)
    img = torch.randn(2, 3, 36, 52)
    torch.testing.assert_close(model(img), plain(img))


def test_spsa_hidden_width_is_configurable():
    default = build_pos_encoding(dict(type='SPSA', blocks=[0]), embed_dim=64, num_heads=4,
                                 depth=2)
    paper = build_pos_encoding(dict(type='SPSA', blocks=[0], hidden=32), embed_dim=64,
                               num_heads=4, depth=2)
    assert default.priors['0'].w1.out_features == 4 * 16
    assert paper.priors['0'].w1.out_features == 4 * 32
    assert list(default.priors) == ['0']


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_spsa_builds_no_n_by_n_by_hidden_tensor():
    pe = SPSA(embed_dim=192, num_heads=3, depth=1, pretrain_grid=(14, 14))
    grid = (64, 64)
    n = grid[0] * grid[1]
    with _LargestTensor() as probe:
        prior = pe.prior(0, grid)
        prior.sum().backward()
    assert prior.shape == (3, n, n)
    # the (heads, N, N) prior itself is the largest thing built, far below N*N*hidden
    assert probe.largest == 3 * n * n < n * n * pe.hidden


def test_mpvg_with_class_token_is_rejected():
    with pytest.raises(ValueError, match='MPVG.*class_token=False'):
        vit('MPVG', class_token=True)


def test_unknown_scheme_and_argument_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"'Sinus'.*'LaPE'.*'SinCosPE'"):
        vit('Sinus')
    with pytest.raises(TypeError, match='bogus'):
        vit('LearnedPE', pe_args={'bogus': 1})
    with pytest.raises(ValueError, match=r'blocks=\[5\].*outside 0\.\.2'):
        vit('PEG', pe_args={'blocks': [5]})
    with pytest.raises(ValueError, match='class_slot=True'):
        vit('LearnedPE', pe_args={'class_slot': True})
    with pytest.raises(ValueError, match='MPVG adds a term at the final norm.*final_norm=True'):
        vit('MPVG', final_norm=False)


def test_peg_runs_after_the_configured_blocks_only():
    model = vit('PEG', pe_args={'blocks': [1]}).eval()
    img = torch.randn(1, 3, 20, 24)
    x, state = model.embed(img)
    with torch.no_grad():
        manual = model.blocks[0](x, model.pe, state)
        manual = model.blocks[1](manual, model.pe, state)
        conv = model.pe.convs['1']
        manual = conv(manual, state.grid)  # timm PosConv: x + dwconv(x)
        manual = model.blocks[2](manual, model.pe, state)
        torch.testing.assert_close(model.finalize(manual, state), model.forward_features(img)[0])


@pytest.mark.parametrize('scheme', ['LearnedPE', 'LaPE', 'FactorizedPE'])
def test_resized_tables_are_cached_in_inference_and_refreshed_on_load(scheme):
    pe = vit(scheme).eval().pe

    def table():
        return pe.prepare((9, 5), torch.device('cpu'), torch.float32).tensors['pos']
    with torch.no_grad():
        first = table()
        assert table() is first
        pe.load_state_dict({k: v + 1 for k, v in pe.state_dict().items()})
        fresh = table()
    assert fresh is not first and not torch.equal(fresh, first)
    with torch.enable_grad():
        assert table() is not fresh and table().requires_grad


@pytest.mark.parametrize('scheme', SCHEMES)
def test_inference_memos_follow_the_model_to_another_dtype(scheme):
    model = vit(scheme).eval()
    with torch.no_grad():  # values that fp32 rounds, so a stale fp32 memo would show
        for p in model.pe.parameters():
            p.normal_()
    img = torch.randn(1, 3, 28, 44, dtype=torch.float64)
    with torch.no_grad():
        model(img.float())  # memos filled in fp32
        model.double()
        memoised = model(img)[0]
    recomputed = model(img)[0].detach()  # autograd on: no memo
    torch.testing.assert_close(memoised, recomputed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('scheme', ['RoPEAxial', 'RoPEMixed', 'RoPEEVA02', 'RoPEDINOv3'])
def test_a_double_model_rotates_in_float64(scheme):
    """A model runs in its dtype: float64 angles and rotations, not float32 ones."""
    model = vit(scheme).double().eval()
    rope = model.pe.prepare((5, 7), torch.device('cpu'), torch.float64).tensors['rope']
    rope = rope[0] if isinstance(rope, tuple) else rope
    assert rope.dtype in (torch.float64, torch.complex128)
    qk = torch.randn(1, 35, 2, model.num_heads, model.embed_dim // model.num_heads,
                     dtype=torch.float64)
    state = model.pe.prepare((5, 7), torch.device('cpu'), torch.float64)
    rotated = model.pe.rotate(qk, 0, state)
    # a rotation keeps each pair's norm: to float64 precision only when computed in it
    pairs = (lambda t: t.reshape(*t.shape[:-1], 2, -1).norm(dim=-2)) if scheme == 'RoPEDINOv3' \
        else (lambda t: t.reshape(*t.shape[:-1], -1, 2).norm(dim=-1))
    torch.testing.assert_close(pairs(rotated), pairs(qk), rtol=1e-13, atol=1e-13)


def test_factorized_pe_is_a_column_table_then_a_row_table_resized_per_axis():
    pe = build_pos_encoding(dict(type='FactorizedPE'), embed_dim=8, num_heads=2, depth=1,
                            pretrain_grid=(3, 4))
    table = pe.prepare((3, 4), torch.device('cpu'), torch.float32).tensors['pos'].view(3, 4, 8)
    torch.testing.assert_close(table[2, 1, :4], pe.col_embed[1])  # [X_x ; Y_y]
    torch.testing.assert_close(table[2, 1, 4:], pe.row_embed[2])
    wider = pe.prepare((3, 8), torch.device('cpu'), torch.float32).tensors['pos'].view(3, 8, 8)
    torch.testing.assert_close(wider[:, :, 4:], table[:, :1, 4:].expand(3, 8, 4))  # rows kept
    assert not torch.allclose(wider[0, :4, :4], table[0, :, :4])  # columns resampled


def test_class_token_without_a_table_slot_gets_no_position():
    """DeiT-III style: the class token takes no PE, the patches do."""
    model = vit('LearnedPE', class_token=True, pe_args=dict(class_slot=False))
    assert model.pe.table.weight.shape[1] == 14 * 14
    img = torch.randn(2, 3, 28, 44)
    x, state = model.embed(img)
    torch.testing.assert_close(x[:, 0], model.cls_token[0].expand(2, -1))
    patches = model.patch_embed(img).flatten(1, 2)
    torch.testing.assert_close(x[:, 1:] - patches, state.tensors['pos'].expand(2, -1, -1))
    assert state.tensors['pos'].shape == (1, 7 * 11, 32)


def test_lape_family_block_sets_and_input_term():
    lape, pvg, mpvg = (vit(s) for s in ('LaPE', 'PVG', 'MPVG'))
    assert lape.pe.blocks == [0, 1, 2] and pvg.pe.blocks == [1, 2] and mpvg.pe.blocks == [1, 2]
    assert mpvg.pe.last_norm_layer is not None and pvg.pe.last_norm_layer is None
    x = torch.randn(1, 12, 32)
    for model, adds in ((lape, False), (pvg, True)):
        state = model.pe.prepare((3, 4), x.device, x.dtype)
        changed = not torch.equal(model.pe.embed(x, state), x)
        assert changed == adds
    # MPVG = PVG + LN'_last(pos_0) after the final norm
    mpvg.load_state_dict(pvg.state_dict(), strict=False)
    img = torch.randn(1, 3, 12, 16)
    with torch.no_grad():
        t_pvg, _ = pvg.forward_features(img)
        t_mpvg, _ = mpvg.forward_features(img)
        pos0 = mpvg.pe.table.resized((3, 4))
        torch.testing.assert_close(t_mpvg - t_pvg,
                                   mpvg.pe.last_norm_layer(pos0).expand_as(t_pvg))


def test_another_schemes_option_left_behind_is_named():
    """A config whose type changed on the command line keeps the old scheme's options:
    refused naming them and the new scheme's arguments."""
    from mmvitpe.models.pos_encodings import build_pos_encoding
    with pytest.raises(TypeError, match=r"RoPEMixed takes no \['rescale_coords'\] \(another "
                                        r"scheme's options\?\); its options: \['blocks', "
                                        r"'theta'\]"):
        build_pos_encoding(dict(type='RoPEMixed', rescale_coords=2.), embed_dim=32, num_heads=2,
                           depth=2)
