"""torch.compile of the ViT and ViT-Adapter: one graph, eager's numbers, no recompiles.

Tiny models (depth 2, width 32) and the ``aot_eager`` backend (dynamo and AOT
autograd, the parts that can break a graph or a backward, without inductor's
code generation); one small inductor case. ``fullgraph=True`` makes any graph
break an error.
"""
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from mmvitpe.models import STA, DINOv3Adapter, PEViT, ViTAdapter, ViTBaseline, ViTDet
from mmvitpe.models.pos_encodings import PEState, build_pos_encoding
from mmvitpe.registry import POS_ENCODINGS


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')
SCHEMES = sorted(POS_ENCODINGS.module_dict)
# the adapter consults the PE at the ViT's own sites (every scheme is traced in PEViT):
# a sample of the kinds of scheme, ~6 s each (layer-wise chain with a final-norm term,
# table + rotary, table + relative bias with class entries, table + gain + conv)
ADAPTER_SCHEMES = ['MPVG', 'RoPEMixedAPE', 'BEiTPE', 'SPViTPE']


def vit(scheme='LearnedPE'):
    return PEViT(embed_dim=32, depth=2, num_heads=2, patch_size=8, pretrain_size=32,
                 pos_embed=dict(type=scheme))


def adapter(scheme='LearnedPE', **kw):
    # windows in block 0, the final norm with MPVG's term: the detection configs' paths
    return ViTAdapter(embed_dim=32, depth=2, num_heads=2, deform_num_heads=2, conv_inplane=8,
                      pretrain_size=64, interaction_indexes=[[0, 0], [1, 1]],
                      final_norm=True, drop_path_rate=0., window_size=2,
                      window_block_indexes=[0], pos_embed=dict(type=scheme), **kw)


# the other protocols, each with its own PE (the schemes are the trunk's, traced above)
SMALL = dict(embed_dim=32, depth=2, num_heads=2, pretrain_size=64, drop_path_rate=0.)
PROTOCOLS = {
    'DINOv3Adapter-RoPEDINOv3': lambda: DINOv3Adapter(
        **dict(SMALL, depth=4), deform_num_heads=2, conv_inplane=8,
        interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
    'ViTBaseline-LearnedPE': lambda: ViTBaseline(**SMALL, out_indices=[0, 0, 1, 1],
                                                 window_size=2, window_block_indexes=[0]),
    'ViTDet-ViTDetPE': lambda: ViTDet(**SMALL, preset='tiny', window_size=2,
                                      window_block_indexes=[0], out_channels=16),
    'STA-LearnedPE': lambda: STA(**SMALL, arch='tiny', interaction_indexes=[0, 1, 1],
                                 conv_inplane=8),
}


def outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def loss(out):
    return sum(o.float().square().mean() for o in outputs(out))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('build,size,scheme', [(vit, 32, s) for s in SCHEMES] +
                         [(adapter, 64, s) for s in ADAPTER_SCHEMES] +
                         [(lambda _, b=b: b(), 64, None) for b in PROTOCOLS.values()],
                         ids=[f'PEViT-{s}' for s in SCHEMES] +
                         [f'ViTAdapter-{s}' for s in ADAPTER_SCHEMES] + list(PROTOCOLS))
def test_every_scheme_traces_without_graph_breaks(build, size, scheme):
    """Training (with autograd) and inference under no_grad, where the schemes'
    memos would otherwise break the graph; every protocol too."""
    model = build(scheme)
    img = torch.randn(2, 3, size, size)
    for training in (True, False):
        model.train(training)
        with torch.set_grad_enabled(training):
            explained = torch._dynamo.explain(model)(img)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), \
            (training, [r.reason for r in explained.break_reasons])


def check_compiled_equals_eager(model, img, dtype=None, atol=1e-4):
    """Train step (outputs and every gradient) and no_grad inference, compiled
    without a graph break, against eager."""
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    autocast = torch.autocast('cpu', dtype=dtype or torch.bfloat16, enabled=dtype is not None)
    model.train()
    grads = []
    for fn in (model, compiled):
        model.zero_grad()
        with autocast:
            out = fn(img)
        loss(out).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        if fn is model:
            ref = [o.detach() for o in outputs(out)]
    for a, b in zip(outputs(out), ref):
        torch.testing.assert_close(a.detach(), b, atol=atol, rtol=atol)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=atol, rtol=atol,
                                   msg=lambda m: f'{name}: {m}')
    model.eval()
    with torch.no_grad(), autocast:
        for a, b in zip(outputs(compiled(img)), outputs(model(img))):
            torch.testing.assert_close(a, b, atol=atol, rtol=atol)


@pytest.mark.parametrize('scheme', ['LearnedPE', 'RoPEMixed', 'RelPosBias', 'SPSA', 'LookHere',
                                    'MPVG', 'RoPEDINOv3', 'PEG'])
def test_compiled_vit_equals_eager(scheme):
    check_compiled_equals_eager(vit(scheme), torch.randn(2, 3, 32, 40))


def test_compiled_adapter_equals_eager():
    check_compiled_equals_eager(adapter('RoPEMixedAPE'), torch.randn(2, 3, 64, 96))


def test_compiled_adapter_equals_eager_under_bf16_autocast():
    # bf16 has 8 bits of mantissa: compiled and eager round the same ops, in another order
    check_compiled_equals_eager(adapter('RoPEMixed'), torch.randn(2, 3, 64, 64),
                                dtype=torch.bfloat16, atol=2e-2)


@pytest.mark.parametrize('build,sizes,training', [
    (vit, [(32, 40), (32, 40), (48, 40), (64, 56)], True),
    (adapter, [(64, 96), (64, 96), (96, 128)], False)], ids=['PEViT', 'ViTAdapter'])
def test_no_recompile_per_step_nor_per_size_with_dynamic_shapes(build, sizes, training):
    """A fixed size compiles once for any number of steps; with dynamic shapes
    new image sizes reuse the graph. (Sizes start non-square: dynamo would
    otherwise assume H == W and compile again for the first H != W.)"""
    model = build('RoPEMixed').train(training)
    counter = CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    frames = []
    for h, w in sizes:
        img = torch.randn(2, 3, h, w)
        with torch.set_grad_enabled(training):
            out = compiled(img)
            if training:
                loss(out).backward()
            for a, b in zip(outputs(out), outputs(model(img))):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        frames.append(counter.frame_count)
    assert frames[0] > 0 and frames == frames[:1] * len(sizes), frames


def test_inductor_compiles_a_small_vit():
    model = vit('RoPEMixed').eval()
    compiled = torch.compile(model, fullgraph=True)
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(img), model(img), atol=1e-4, rtol=1e-4)


def test_inference_memo_steps_aside_while_compiling():
    model = vit('LearnedPE').eval()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        compiled(img)
        assert not model.pe.__dict__.get('_inference_memo')
        model(img)
    assert model.pe.__dict__['_inference_memo']  # eager inference still memoises


@pytest.mark.parametrize('scheme', ['RoPEAxial', 'RoPEMixed', 'RoPEEVA02'])
def test_rope_real_path_equals_the_complex_one(scheme):
    """The (cos, sin) rotations that compile and export use give the complex
    product's numbers, prefix token included."""
    pe = build_pos_encoding(dict(type=scheme), embed_dim=32, num_heads=2, depth=2,
                            num_prefix_tokens=1, pretrain_grid=(4, 4))
    grid = (3, 5)
    complex_state = pe.prepare(grid, torch.device('cpu'), torch.float32)
    assert complex_state.tensors['rope'][0].is_complex()
    real_state = PEState(grid, tensors={'rope': pe._real_rotations(grid)})
    qk = torch.randn(2, 16, 2, 2, 16)
    for block in (0, 1):
        rotated = pe.rotate(qk, block, complex_state)
        assert not torch.allclose(rotated[:, 1:], qk[:, 1:])
        torch.testing.assert_close(pe.rotate(qk, block, real_state), rotated, atol=1e-5, rtol=0)
