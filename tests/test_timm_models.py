"""Our timm models pass timm's own generic per-model tests, and keep its contract.

timm's ``tests/test_models.py`` is not installed with timm; its sdist on PyPI
ships it at the installed version. The first run downloads that sdist once
(``pip download``) into ``$MMVITPE_HOME/timm-tests/<version>/`` (default
``~/.cache/mmvitpe``), and this file calls timm's test functions on our
registered models: one DeiT-Ti per scheme plus the ``_cls`` variants.
"""
import copy
import importlib.util
import os
import subprocess
import sys
import tarfile
import warnings

import pytest
import timm
import torch

import mmvitpe  # noqa: F401  (registers the models)
from mmvitpe.models.pos_encodings import build_pos_encoding
from mmvitpe.models.timm_models import UnsupportedPool
from mmvitpe.registry import POS_ENCODINGS

CACHE = os.path.join(os.environ.get('MMVITPE_HOME', os.path.expanduser('~/.cache/mmvitpe')),
                     'timm-tests', timm.__version__)
SCHEMES = sorted(POS_ENCODINGS.module_dict)
# timm's fast-test size of every scheme, with and without a class token: name -> scheme
TEST_MODELS = {f'test_pevit_{s.lower()}{cls}': s for cls in ('', '_cls') for s in SCHEMES
               if not cls or POS_ENCODINGS.module_dict[s].supports_class_token}
DEIT_TINY = [f'deit_tiny{name[len("test_pevit"):]}_patch16_224' for name in TEST_MODELS]
DEIT_SAMPLE = ['deit_tiny_mpvg_patch16_224', 'deit_tiny_learnedpe_cls_patch16_224',
               'deit_tiny_spsa_patch16_224']

# timm's generic per-model tests (its own arguments), as timm runs them on its ViTs.
# deit*/vit_* are in timm's NON_STD_FILTERS, so the cfg test is the non-std one.
UPSTREAM_TESTS = {
    'test_model_forward': dict(batch_size=1),
    'test_model_backward': dict(batch_size=2),
    'test_model_default_cfgs_non_std': dict(batch_size=1, cfg_device='meta'),
    'test_model_forward_features': dict(batch_size=1),
    'test_model_forward_intermediates_features': dict(batch_size=1),
    'test_model_forward_intermediates': dict(batch_size=1),
    'test_prune_intermediate_layers_contract': {},
    'test_forward_after_prune_intermediate_layers': {},
    'test_head_hidden_size': dict(model_kwargs={}),
}
# Run on some schemes only, with the reason:
# - fx tracing: most schemes branch on the token grid, which they read from the input's
#   shape (resize a table only when the grid differs, RoPE's len(grid), window and
#   offset sizes); symbolic fx cannot branch on traced values ("symbolically traced
#   variables cannot be used as inputs to control flow"). The schemes that do not pass.
FX_SCHEMES = ('NoPE', 'PEG', 'SinCosPE')
# - test_prune_intermediate_layers_params_used wants a gradient on every parameter after
#   pruning; ours freeze, not delete, the PE parameters of pruned blocks, which the scheme
#   owns (see TimmPEViT.prune_intermediate_layers), so it runs on the schemes without
#   per-block parameters. timm's own contract test, test_prune_intermediate_layers_contract
#   (trainable parameters only), runs on all.


def has_per_block_pe(scheme: str) -> bool:
    """Whether the scheme owns parameters of blocks after the first (what pruning drops)."""
    pe = build_pos_encoding(dict(type=scheme), embed_dim=32, num_heads=4, depth=3,
                            num_prefix_tokens=0, num_register_tokens=0, pretrain_grid=(4, 4))
    return any(pe.stack_position(name) > 0 for name, _ in pe.named_parameters())


PER_BLOCK_PE = tuple(s for s in SCHEMES if has_per_block_pe(s))
PARTIAL_TESTS = {
    'test_model_forward_fx': (dict(batch_size=1), FX_SCHEMES),
    'test_model_backward_fx': (dict(batch_size=2), FX_SCHEMES),
    'test_model_forward_fx_torchscript': (dict(batch_size=1), FX_SCHEMES),
    'test_prune_intermediate_layers_params_used': (
        {}, tuple(s for s in SCHEMES if s not in PER_BLOCK_PE)),
}
# Left out, with the reason:
# - test_model_forward_torchscript: PEViT is an mmengine BaseModule, whose is_init setter
#   TorchScript cannot compile ("Expected bool but got Tensor"), and the schemes' PEState
#   (a dict of tensors and Python ints) has no TorchScript type.
# - test_features_only_grad_checkpointing_backward: timm 1.0.31's FeatureGetterNet (the
#   features_only wrapper of its ViTs, and ours) has no set_grad_checkpointing; timm
#   runs it on FeatureListNet models only. test_grad_checkpointing_gives_the_same_gradients
#   below checks ours.
# - test_model_inference, test_model_load_pretrained, test_model_features_pretrained:
#   need published weights on the Hugging Face hub; ours are trained by the user.
UPSTREAM_CASES = [
    (test, name, kwargs)
    for test, (kwargs, schemes) in {**{t: (k, SCHEMES) for t, k in UPSTREAM_TESTS.items()},
                                    **PARTIAL_TESTS}.items()
    for name, scheme in TEST_MODELS.items() if scheme in schemes]

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def _download_sdist_tests() -> str:
    """timm's tests/test_models.py for the installed timm, from its PyPI sdist (once)."""
    path = os.path.join(CACHE, 'test_models.py')
    if os.path.isfile(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    done = subprocess.run(
        [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
         '--disable-pip-version-check', '-d', CACHE, f'timm=={timm.__version__}'],
        capture_output=True, text=True)
    sdist = os.path.join(CACHE, f'timm-{timm.__version__}.tar.gz')
    if done.returncode != 0 or not os.path.isfile(sdist):
        raise RuntimeError(f'could not download the timm {timm.__version__} sdist (its tests/) '
                           f'from PyPI into {CACHE}:\n{done.stderr[-2000:]}')
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f'timm-{timm.__version__}/tests/test_models.py')
        with tar.extractfile(member) as src, open(path + '.part', 'wb') as dst:
            dst.write(src.read())
    os.replace(path + '.part', path)  # atomic: a concurrent run never sees half a file
    return path


@pytest.fixture(scope='module')
def upstream():
    """timm's test_models module (importing it lists timm's models, as collection does)."""
    spec = importlib.util.spec_from_file_location('timm_upstream_test_models',
                                                  _download_sdist_tests())
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # its CI markers (base, cfg, ...) are not registered here
        warnings.simplefilter('ignore', pytest.PytestUnknownMarkWarning)
        spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('test_name,model_name,kwargs', UPSTREAM_CASES,
                         ids=[f'{name}-{test}' for test, name, _ in UPSTREAM_CASES])
def test_timm_generic_model_tests(upstream, test_name, model_name, kwargs):
    getattr(upstream, test_name)(model_name=model_name, **kwargs)


@pytest.mark.parametrize('model_name', DEIT_SAMPLE)
def test_timm_cfg_test_on_the_deit_registrations(upstream, model_name):
    """The full-size names share the factory; timm's cfg/contract test on a few."""
    upstream.test_model_default_cfgs_non_std(model_name=model_name, batch_size=1,
                                             cfg_device='meta')


def test_registrations_cover_every_scheme_and_size():
    names = set(timm.list_models('deit_*_patch16_224', module='timm_models'))
    assert set(DEIT_TINY) <= names
    assert 'deit_tiny_mpvg_cls_patch16_224' not in names  # MPVG takes no class token
    assert len(names) == 3 * len(DEIT_TINY)  # tiny, small, base
    assert set(timm.list_models('test_pevit_*')) == set(TEST_MODELS)
    cfg = timm.get_pretrained_cfg('deit_small_spsa_cls_patch16_224').to_dict()
    assert (cfg['num_classes'], cfg['input_size'], cfg['first_conv'], cfg['classifier'],
            cfg['fixed_input_size']) == (1000, (3, 224, 224), 'patch_embed.proj', 'head', False)
    model = timm.create_model('deit_small_spsa_cls_patch16_224', device='meta')
    assert (model.embed_dim, len(model.blocks), model.global_pool) == (384, 12, 'token')


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match='ships no ImageNet weights'):
        timm.create_model('deit_tiny_mpvg_patch16_224', pretrained=True)
    with pytest.raises(ValueError, match="pos_embed type 'SPSA' is not the model's scheme 'MPVG'"):
        timm.create_model('deit_tiny_mpvg_patch16_224', pos_embed=dict(type='SPSA'))
    model = timm.create_model('deit_tiny_spsa_patch16_224', pos_embed=dict(hidden=8),
                              device='meta')
    assert model.pe.hidden == 8
    with pytest.raises(UnsupportedPool, match="'token' needs the class token"):
        model.reset_classifier(3, 'token')
    with pytest.raises(ValueError, match="global_pool='map'; valid:"):
        model.reset_classifier(3, 'map')
    unpooled = timm.create_model('test_pevit_nope_cls', num_classes=0, global_pool='')
    assert unpooled(torch.randn(1, 3, 32, 32)).shape == (1, 1 + 4, 64)


@pytest.mark.parametrize('name', ['test_pevit_mpvg', 'test_pevit_lape_cls'])
def test_features_only_out_indices_are_the_block_maps(name):
    """features_only=True with out_indices gives forward_intermediates' maps of those blocks,
    at odd sizes; pruning freezes the PE parameters it leaves unused (MPVG's final term,
    per-block norms of dropped blocks), so every trainable parameter gets a gradient."""
    torch.manual_seed(0)
    full = timm.create_model(name, num_classes=0).eval()
    features = timm.create_model(name, features_only=True, out_indices=(0, 2)).eval()
    features.model.load_state_dict(full.state_dict())
    img = torch.randn(2, 3, 50, 81)
    with torch.no_grad():
        maps = features(img)
        ref = full.forward_intermediates(img, indices=[0, 2], intermediates_only=True)
    assert [tuple(m.shape) for m in maps] == [(2, 64, 4, 6)] * 2
    for a, b in zip(maps, ref):
        torch.testing.assert_close(a, b)
    assert features.feature_info.channels() == [64, 64]
    assert features.feature_info.reduction() == [16, 16]
    features.train()
    sum(m.sum() for m in features(img)).backward()
    trainable = {n for n, p in features.model.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for n, p in features.model.named_parameters() if n in trainable)
    frozen = {n for n, p in features.model.named_parameters() if not p.requires_grad}
    expected = {n for n, _ in full.pe.named_parameters() if full.pe.stack_position(n) > 2}
    assert frozen == {'pe.' + n for n in expected} and frozen


def test_forward_head_and_intermediates_follow_timm_conventions():
    torch.manual_seed(0)
    model = timm.create_model('test_pevit_learnedpe_cls', num_classes=7).eval()
    img = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        tokens = model.forward_features(img)
        assert tokens.shape == (2, 1 + 12, 64)
        torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens[:, 0])
        torch.testing.assert_close(model(img), model.head(tokens[:, 0]))
        final, inter = model.forward_intermediates(img, indices=2, norm=True,
                                                   return_prefix_tokens=True)
        torch.testing.assert_close(final, tokens)
        (last_map, last_prefix) = inter[-1]
        torch.testing.assert_close(last_map.flatten(2).transpose(1, 2), tokens[:, 1:])
        torch.testing.assert_close(last_prefix, tokens[:, :1])
        nlc = model.forward_intermediates(img, indices=[1], output_fmt='NLC',
                                          intermediates_only=True, stop_early=True)
        assert nlc[0].shape == (2, 12, 64)
        model.reset_classifier(0, 'max')
        torch.testing.assert_close(model(img), tokens[:, 1:].amax(1))
    with pytest.raises(ValueError, match="output_fmt='NHWC'; valid"):
        model.forward_intermediates(img, output_fmt='NHWC')


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model('test_pevit_relposbias', num_classes=3, drop_path_rate=0.)
    twin = copy.deepcopy(model)
    twin.set_grad_checkpointing()
    assert twin.with_cp and not model.with_cp
    img = torch.randn(2, 3, 32, 48)
    for m in (model, twin):
        m(img).square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
