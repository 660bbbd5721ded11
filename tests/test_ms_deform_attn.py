"""The multi-scale deformable attention op (mmvitpe/ops) and the module on it."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mmvitpe.models.layers.deformable_attention import DeformableAttention
from mmvitpe.ops import ms_deform_attn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(6, 8), (3, 4)]


def op_inputs(dtype=torch.float32, batch=2, queries=5, heads=2, dim=4, points=3):
    """Random inputs, some sampling locations outside the map (zero padding)."""
    keys = sum(h * w for h, w in SHAPES)
    value = torch.randn(batch, keys, heads, dim, dtype=dtype)
    loc = torch.rand(batch, queries, heads, len(SHAPES), points, 2, dtype=dtype) * 1.2 - 0.1
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, dtype=dtype)
    return [t.requires_grad_() for t in (value, loc, weights)]


def flat(shapes):
    return [s for hw in shapes for s in hw]


def test_op_equals_mmcv_pure_pytorch_core_in_value_and_gradient():
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    value, loc, weights = op_inputs()
    ours = ms_deform_attn(value, flat(SHAPES), loc, weights)
    theirs = multi_scale_deformable_attn_pytorch(value, torch.tensor(SHAPES), loc, weights)
    assert ours.shape == (2, 5, 8)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    grad = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (value, loc, weights), grad),
                    torch.autograd.grad(theirs, (value, loc, weights), grad)):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_op_gradient_by_gradcheck_in_double():
    value, loc, weights = op_inputs(torch.float64, batch=1, queries=3, heads=2, dim=2, points=2)
    assert torch.autograd.gradcheck(
        lambda v, l, w: ms_deform_attn(v, flat(SHAPES), l, w), (value, loc, weights))


def test_op_registration_passes_torch_library_opcheck():
    """Schema, fake kernel (shapes and dtypes), autograd registration, and the
    dynamo/AOT path all agree with the real kernel."""
    value, loc, weights = op_inputs(batch=1, queries=2)
    torch.library.opcheck(torch.ops.mmvitpe.ms_deform_attn.default,
                          (value, flat(SHAPES), loc, weights))


def border_inputs(shapes, dtype):
    """Points inside, outside, far off and exactly on the borders where zero
    padding starts and on a pixel centre (where the location gradient is one-sided)."""
    keys = sum(h * w for h, w in shapes)
    # heads before keys in memory: the kernels take non-contiguous inputs
    value = torch.randn(2, 3, keys, 4, dtype=dtype).transpose(1, 2)
    loc = torch.rand(2, 9, 3, len(shapes), 4, 2, dtype=dtype) * 1.6 - 0.3
    (h, w), far = shapes[0], 1e4
    loc[0, :6, 0, 0, 0] = torch.tensor([[-0.5 / w, 0.5], [1 + 0.5 / w, 0.5], [0.5, -0.5 / h],
                                        [0.5, 1 + 0.5 / h], [-far, far], [0.5 / w, 0.5 / h]],
                                       dtype=dtype)
    weights = torch.rand(2, 9, 3, len(shapes), 4, dtype=dtype)
    return value, loc, weights


@pytest.mark.parametrize('shapes', [[(6, 8), (3, 4)], [(5, 7)], [(3, 9), (7, 2), (1, 1)]])
@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_cpu_paths_equal_grid_sample_arithmetic(shapes, dtype, atol):
    """The compiled CPU kernels and the embedding_bag gather, against the
    grid_sample arithmetic in value and gradient; the op on CPU runs the
    compiled kernels."""
    module = sys.modules['mmvitpe.ops.ms_deform_attn']
    kernels = module.cpu_kernels()
    assert kernels is not None, 'the CPU kernel did not build (see the warning)'
    value, loc, weights = border_inputs(shapes, dtype)
    args = (value, shapes, loc, weights)
    expected = module.ms_deform_attn_grid_sample(*args)
    compiled = kernels.ms_deform_attn(value, flat(shapes), loc, weights)
    torch.testing.assert_close(compiled, expected, atol=atol, rtol=0)
    torch.testing.assert_close(module.ms_deform_attn_gather(*args), expected, atol=atol, rtol=0)
    assert torch.equal(ms_deform_attn(value, flat(shapes), loc, weights), compiled)
    torch.testing.assert_close(module._bilinear_samples_gather(*args[:3]),
                               module._bilinear_samples_grid_sample(*args[:3]), atol=atol, rtol=0)
    grad = torch.randn_like(expected)
    generic = module._gradients(grad, *args, module._bilinear_samples_grid_sample)
    compiled = kernels.ms_deform_attn_backward(grad, value, flat(shapes), loc, weights)
    gathered = module._gradients(grad, *args, module._bilinear_samples_gather)
    for ours, theirs, reference in zip(compiled, gathered, generic):
        assert reference.abs().sum() > 0
        torch.testing.assert_close(ours, reference, atol=atol, rtol=0)
        torch.testing.assert_close(theirs, reference, atol=atol, rtol=0)
    op = torch.ops.mmvitpe.ms_deform_attn_backward(grad, value, flat(shapes), loc, weights)
    assert all(torch.equal(a, b) for a, b in zip(op, compiled))


def test_cpu_kernels_give_the_same_bits_on_any_thread_count():
    value, loc, weights = border_inputs([(6, 8), (3, 4)], torch.float32)
    args = (value, flat([(6, 8), (3, 4)]), loc, weights)
    grad = torch.randn(2, 9, 12)
    threads = torch.get_num_threads()
    runs = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            runs.append([ms_deform_attn(*args),
                         *torch.ops.mmvitpe.ms_deform_attn_backward(grad, *args)])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_cpu_kernel_names_shapes_that_do_not_fit_the_value():
    kernels = sys.modules['mmvitpe.ops.ms_deform_attn'].cpu_kernels()
    value, loc, weights = op_inputs()
    with pytest.raises(RuntimeError, match=r'spatial_shapes \[6, 8, 3, 5\] hold 63 tokens, '
                                           r'value has 60'):
        kernels.ms_deform_attn(value, [6, 8, 3, 5], loc, weights)
    with pytest.raises(RuntimeError, match='needs one dtype, got Float and Double'):
        kernels.ms_deform_attn(value, flat(SHAPES), loc.double(), weights)


def test_cpu_path_falls_back_with_a_warning_when_the_kernel_cannot_build(tmp_path):
    """No compiler: the warning names the source, and the op still runs (gather path)."""
    code = textwrap.dedent('''
        import warnings
        import torch
        from mmvitpe.ops import ms_deform_attn
        value, loc = torch.randn(1, 4, 1, 2), torch.rand(1, 3, 1, 1, 2, 2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            out = ms_deform_attn(value, [2, 2], loc, torch.rand(1, 3, 1, 1, 2))
        print(out.shape, [str(w.message) for w in caught])
    ''')
    env = dict(os.environ, CXX=str(tmp_path / 'no-compiler'),
               TORCH_EXTENSIONS_DIR=str(tmp_path / 'extensions'))
    done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith('torch.Size([1, 3, 2])'), done.stdout
    assert 'could not build the CPU deformable-attention kernel' in done.stdout
    assert 'ms_deform_attn_cpu.cpp' in done.stdout and 'embedding_bag path runs' in done.stdout


def test_cpu_kernel_first_build_is_announced_on_stderr_not_stdout(tmp_path):
    """Two processes starting together on an empty cache (as two ranks do) both get
    the kernel, and the build is announced on stderr, never stdout; a later process
    loads the cached build silently."""
    code = ('from mmvitpe.ops.ms_deform_attn import cpu_kernels\n'
            'assert cpu_kernels() is not None\n')
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path))

    def start():
        return subprocess.Popen([sys.executable, '-c', code], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    together = [start(), start()]
    outputs = [p.communicate(timeout=900) for p in together]
    later = start()
    outputs.append(later.communicate(timeout=300))
    assert [p.returncode for p in (*together, later)] == [0, 0, 0], outputs
    announcement = 'mmvitpe: built the CPU deformable-attention kernel in '
    assert not any(announcement in stdout for stdout, _ in outputs)
    # the one that waited on the other's lock says so too, unless it came after the build
    assert any(announcement in stderr for _, stderr in outputs[:2]), outputs
    assert announcement not in outputs[2][1], outputs[2][1][-3000:]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cpu_gather_path_runs_in_half_precisions(dtype):
    """fp16/bf16 have no compiled kernel: the embedding_bag path runs them."""
    value, loc, weights = (t.detach() for t in op_inputs())
    args = [t.to(dtype).requires_grad_() for t in (value, loc, weights)]
    out = ms_deform_attn(args[0], flat(SHAPES), args[1], args[2])
    assert out.dtype == dtype
    out.float().sum().backward()
    for t in args:
        assert t.grad.dtype == dtype and t.grad.isfinite().all() and t.grad.abs().sum() > 0
    expected = ms_deform_attn(value, flat(SHAPES), loc, weights)
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.02)


def test_module_equals_mmcv_module_with_its_weights():
    from mmcv.ops import MultiScaleDeformableAttention
    theirs = MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2,
                                           num_points=3, batch_first=True, dropout=0.)
    ours = DeformableAttention(32, 4, 2, 3)
    # same names, shapes and (deterministic part of the) initialisation
    assert list(ours.state_dict()) == list(theirs.state_dict())
    torch.testing.assert_close(ours.sampling_offsets.bias, theirs.sampling_offsets.bias)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours.load_state_dict(theirs.state_dict())
    query = torch.randn(2, 7, 32, requires_grad=True)
    value = torch.randn(2, 60, 32, requires_grad=True)
    ref = torch.rand(1, 7, 1, 2)
    out = ours(query, value, ref, SHAPES)
    expected = theirs(query, value=value, identity=torch.zeros(()), reference_points=ref,
                      spatial_shapes=torch.tensor(SHAPES), level_start_index=torch.tensor([0, 48]))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    for a, b in zip(torch.autograd.grad(out.square().sum(), (query, value)),
                    torch.autograd.grad(expected.square().sum(), (query, value))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_module_names_a_value_length_that_does_not_fit_the_shapes():
    attn = DeformableAttention(16, 2, 2, 2)
    with pytest.raises(ValueError, match=r'\[\(6, 8\), \(3, 4\)\] hold 60 tokens, value has 59'):
        attn(torch.randn(1, 3, 16), torch.randn(1, 59, 16), torch.rand(1, 3, 1, 2), SHAPES)


def test_backbones_import_and_run_without_mmcv_compiled_ops():
    """The ViT core, every PE scheme and the backbones need no ``mmcv._ext``."""
    code = textwrap.dedent('''
        import sys
        sys.modules['mmcv._ext'] = None  # makes "import mmcv._ext" raise ImportError
        import torch
        from mmvitpe.models import PEViT, ViTAdapter, ViTBaseline
        from mmvitpe.registry import POS_ENCODINGS
        schemes = sorted(POS_ENCODINGS.module_dict)
        img = torch.randn(1, 3, 32, 32)
        for scheme in schemes:
            PEViT(embed_dim=32, depth=2, num_heads=2, pretrain_size=32,
                  pos_embed=dict(type=scheme))(img)[0].sum().backward()
        model = ViTAdapter(embed_dim=32, depth=2, num_heads=2, deform_num_heads=2,
                           conv_inplane=8, pretrain_size=32, pos_embed=dict(type='MPVG'),
                           interaction_indexes=[[0, 0], [1, 1]], final_norm=True)
        batch = torch.randn(2, 3, 64, 64)  # the BNs in train mode need 2 values at 1/32
        sum(o.sum() for o in model(batch)).backward()
        outs = ViTBaseline(embed_dim=32, depth=2, num_heads=2, pretrain_size=32,
                           out_indices=[0, 0, 1, 1])(batch)
        assert len(outs) == 4
        assert 'mmcv.ops' not in sys.modules, 'mmcv.ops was imported'
        print('ran', len(schemes), 'schemes')
    ''')
    done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f'ran {len(__import__("mmvitpe").POS_ENCODINGS.module_dict)} schemes' in done.stdout
