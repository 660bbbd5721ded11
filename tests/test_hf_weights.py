"""Weights in the Hugging Face transformers layouts (what users download from the hub):
each family's model built from a small config with random weights moved off their
init (no network), saved with ``save_pretrained``, converted by tools/convert_weights.py,
loaded strictly through ``init_cfg``, and giving transformers' ``last_hidden_state``."""
import json
import os
import runpy
import sys

import pytest
import torch

from helpers import REPO, perturbed
from mmvitpe.models import PEViT
from mmvitpe.weights import CheckpointError, load_pretrained, read_state_dict
from mmvitpe.weights.families import FAMILIES

# scripts/setup_env.sh installs transformers in <venv>/transformers, off the path
# (requirements/tests.txt says why); appended last, the venv's own packages come first
HF_SITE = os.path.join(sys.prefix, 'transformers')
if os.path.isdir(HF_SITE) and HF_SITE not in sys.path:
    sys.path.append(HF_SITE)
if os.environ.get('MMVITPE_REQUIRE_TRANSFORMERS') == '1':
    import transformers
else:
    transformers = pytest.importorskip('transformers', reason='scripts/setup_env.sh installs it')
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)


def dinov2():
    return transformers.Dinov2Model(transformers.Dinov2Config(
        **SMALL, image_size=56, patch_size=14)), dict(
        arch='dinov2_small', embed_dim=32, depth=2, num_heads=2, pretrain_size=56)


def dinov2_registers():
    return transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
        **SMALL, image_size=56, patch_size=14, num_register_tokens=4)), dict(
        arch='dinov2_small_reg4', embed_dim=32, depth=2, num_heads=2, pretrain_size=56)


def dinov3():
    return transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(
        **SMALL, intermediate_size=128, image_size=64, patch_size=16, num_register_tokens=4)), \
        dict(arch='dinov3_small', embed_dim=32, depth=2, num_heads=2, pretrain_size=64,
             qkv_bias=True)


def dinov3_gated():  # the SwiGLU of S+, H+ and 7B: gate_proj / up_proj / down_proj
    return transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(
        **SMALL, intermediate_size=128, image_size=64, patch_size=16, num_register_tokens=4,
        use_gated_mlp=True, hidden_act='silu')), dict(arch='dinov3_small_plus', embed_dim=32, depth=2,
                                   num_heads=2, pretrain_size=64, qkv_bias=True)


def vit():
    return transformers.ViTModel(transformers.ViTConfig(
        **SMALL, intermediate_size=128, image_size=64, patch_size=16)), dict(
        embed_dim=32, depth=2, num_heads=2, pretrain_size=64, class_token=True, norm_eps=1e-12)


def vit_mae():
    return transformers.ViTMAEModel(transformers.ViTMAEConfig(
        **SMALL, intermediate_size=128, image_size=64, patch_size=16, mask_ratio=0.0)), dict(
        embed_dim=32, depth=2, num_heads=2, pretrain_size=64, class_token=True, norm_eps=1e-12)


def beit():
    return transformers.BeitModel(transformers.BeitConfig(
        **SMALL, intermediate_size=128, image_size=64, patch_size=16,
        use_relative_position_bias=True, layer_scale_init_value=0.1)), dict(
        embed_dim=32, depth=2, num_heads=2, pretrain_size=64, class_token=True, norm_eps=1e-12,
        final_norm=False, layer_scale_init_value=0.1,
        pos_embed=dict(type='RelPosBias', class_entries=True))


FAMILY_MODELS = [dinov2, dinov2_registers, dinov3, dinov3_gated, vit, vit_mae, beit]


def hidden_state(model, img):
    kwargs = {}
    if isinstance(model, transformers.ViTMAEModel):  # the identity shuffle: every patch, in order
        kwargs['noise'] = torch.arange(model.embeddings.patch_embeddings.num_patches,
                                       dtype=torch.float)[None].expand(len(img), -1)
    with torch.no_grad():
        return model(pixel_values=img, **kwargs).last_hidden_state


def convert_cli(src, backbone, out, *extra) -> None:
    config = os.path.join(os.path.dirname(out), 'config.py')
    with open(config, 'w') as f:
        f.write("custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)\n"
                f"model = dict(backbone=dict(type='mmvitpe.PEViT', **{backbone!r}))\n")
    argv = sys.argv
    sys.argv = ['tools/convert_weights.py', str(src), config, str(out), *extra]
    try:  # the tool as a user runs it, in this process (an interpreter start is 4 s)
        runpy.run_path(os.path.join(REPO, 'tools/convert_weights.py'), run_name='__main__')
    finally:
        sys.argv = argv


@pytest.mark.parametrize('build', FAMILY_MODELS, ids=lambda b: b.__name__)
def test_a_hub_model_directory_converts_strictly_and_gives_transformers_features(tmp_path,
                                                                                 build, capsys):
    torch.manual_seed(0)
    ref, backbone = build()
    ref = perturbed(ref).eval()
    ref.save_pretrained(tmp_path / 'hub')
    convert_cli(tmp_path / 'hub', backbone, tmp_path / 'converted.pth')
    table = capsys.readouterr().out
    assert 'missing           |     0 |' in table and 'unexpected        |     0 |' in table
    ours = PEViT(**backbone, init_cfg=dict(type='Pretrained', prefix='backbone.',
                                           checkpoint=str(tmp_path / 'converted.pth'))).eval()
    ours.init_weights()
    sizes = [(backbone['pretrain_size'],) * 2]
    if build in (dinov3, dinov3_gated):  # RoPE: any grid, computed the same way
        sizes.append((48, 112))
    for size in sizes:
        img = torch.randn(2, 3, *size)
        with torch.no_grad():
            mine = ours.forward_features(img)[0]
        theirs = hidden_state(ref, img)
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-4)
    # the directory itself through init_cfg, strictly, the same weights
    direct = PEViT(**backbone, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'hub')))
    direct.init_weights()
    for (name, a), b in zip(ours.state_dict().items(), direct.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_task_model_prefix_and_head_are_recognised(tmp_path):
    config = transformers.Dinov2Config(**SMALL, image_size=56, patch_size=14, num_labels=3)
    task = transformers.Dinov2ForImageClassification(config).eval()
    task.save_pretrained(tmp_path)
    ours = PEViT(arch='dinov2_small', embed_dim=32, depth=2, num_heads=2, pretrain_size=56)
    state = read_state_dict(str(tmp_path))
    report = load_pretrained(ours, state, strict=True)
    assert report.families == ['transformers-dinov2', 'dinov2']
    # named as the file holds them
    assert set(report.dropped) == {'classifier.weight', 'classifier.bias',
                                   'dinov2.embeddings.mask_token'}


def test_sharded_safetensors_are_read_through_their_index(tmp_path):
    ref, backbone = dinov2()
    ref.save_pretrained(tmp_path / 'one')
    ref.save_pretrained(tmp_path / 'shards', max_shard_size='20KB')
    assert (tmp_path / 'shards' / 'model.safetensors.index.json').exists()
    assert len(list((tmp_path / 'shards').glob('model-*.safetensors'))) > 1
    whole, sharded = (read_state_dict(str(tmp_path / d)) for d in ('one', 'shards'))
    assert sorted(whole) == sorted(sharded)
    assert all(torch.equal(whole[k], sharded[k]) for k in whole)


@pytest.mark.parametrize('key,value,message', [
    ('hidden_size', 48, r'config.json hidden_size=48 but the model has embed_dim=32'),
    ('num_hidden_layers', 3, r'config.json num_hidden_layers=3 but the model has depth=2'),
    ('num_attention_heads', 4, r'num_attention_heads=4 but the model has num_heads=2'),
    ('patch_size', 8, r'config.json patch_size=8 but the model has patch_size=16'),
    ('num_register_tokens', 0, r'num_register_tokens=0 but the model has '
                               r'num_register_tokens=4'),
    ('hidden_act', 'silu', r"config.json hidden_act='silu' but the model has an Mlp MLP, "
                           r"activation='gelu'"),
    ('rope_theta', 10000.0, r'config.json rope_theta=10000.0 but the model has pos_embed '
                            r'\(RoPEDINOv3\) base=100.0'),
    ('model_type', 'clip', r"config.json: model_type 'clip' is not a layout mmvitpe reads; "
                           r"supported: \['beit', 'dinov2'"),
])
def test_config_json_that_disagrees_with_the_model_stops_the_load(tmp_path, key, value,
                                                                  message):
    ref, backbone = dinov3()
    ref.save_pretrained(tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    config[key] = value
    (tmp_path / 'config.json').write_text(json.dumps(config))
    model = PEViT(**backbone, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path)))
    with pytest.raises(CheckpointError, match=message):
        model.init_weights()


@pytest.mark.parametrize('index,message', [
    ({'weight_map': {'a': '../outside.safetensors'}},
     r"shard '../outside.safetensors' is not a file name in the model directory"),
    ({'weight_map': {}}, r'no "weight_map" of parameter names to shard files'),
    ({'weight_map': {'a': 'model-00001.safetensors', 'b': 'model-00001.safetensors'}},
     r"names 1 tensors its shards do not hold, e.g. \['b'\]; the download is incomplete"),
])
def test_a_hostile_or_incomplete_shard_index_is_refused(tmp_path, index, message):
    from safetensors.torch import save_file
    (tmp_path / 'config.json').write_text(json.dumps({'model_type': 'dinov2'}))
    save_file({'a': torch.zeros(2)}, str(tmp_path / 'model-00001.safetensors'))
    (tmp_path / 'model.safetensors.index.json').write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(str(tmp_path))


def test_every_family_is_in_the_docs_list_and_the_cli_help(tmp_path, capsys):
    with open(os.path.join(REPO, 'docs', 'weights.md')) as f:
        docs = f.read()
    with pytest.raises(SystemExit):
        convert_cli('--help', {}, tmp_path / 'unused.pth')
    help_text = capsys.readouterr().out
    for family in FAMILIES.values():
        assert f'`{family.name}`' in docs, family.name
        assert f'{family.name}: {family.sources}'[:60] in help_text.replace('\n  ', ' '), \
            family.name


def test_load_from_a_model_directory_puts_it_on_the_backbone(tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint
    ref, backbone = dinov2_registers()
    ref = perturbed(ref).eval()
    ref.save_pretrained(tmp_path)

    class Segmentor(torch.nn.Module):  # what load_from loads into: a model with a backbone
        def __init__(self):
            super().__init__()
            self.backbone = PEViT(**backbone)
    model = Segmentor().eval()
    load_checkpoint(model, str(tmp_path), map_location='cpu')  # mmengine's, as load_from
    img = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        mine = model.backbone.forward_features(img)[0]
    torch.testing.assert_close(mine, hidden_state(ref, img), rtol=0, atol=1e-4)
