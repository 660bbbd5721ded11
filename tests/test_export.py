"""Export under torch.no_grad(), as users call it: ONNX (both exporters) checked
against onnxruntime, torch.export, and tools/deployment/export_onnx.py."""
import os
import subprocess
import sys
import warnings

import onnx
import onnxruntime
import pytest
import torch

from mmvitpe.models import STA, PEViT, ViTAdapter, ViTBaseline, ViTDet
from mmvitpe.registry import POS_ENCODINGS


pytestmark = pytest.mark.usefixtures('one_intra_op_thread')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vit(scheme):
    return PEViT(embed_dim=32, depth=2, num_heads=2, patch_size=8, pretrain_size=32,
                 pos_embed=dict(type=scheme)).eval()


def onnxruntime_outputs(model_bytes: bytes, img: torch.Tensor) -> list:
    session = onnxruntime.InferenceSession(model_bytes, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: img.numpy()})


@pytest.mark.parametrize('scheme', sorted(POS_ENCODINGS.module_dict))
def test_every_scheme_exports_to_onnx_and_matches_onnxruntime(scheme):
    model = vit(scheme)
    img = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        program = torch.onnx.export(model, (img,), dynamo=True, verbose=False)
        expected, = model(img)
    onnx.checker.check_model(program.model_proto)
    got, = onnxruntime_outputs(program.model_proto.SerializeToString(), img)
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('protocol', ['ViTBaseline', 'ViTDet', 'STA'])
def test_the_protocols_without_deformable_attention_export_to_onnx(protocol):
    """The dense protocols of plain ops, at a size that pads to 32 and crops back."""
    small = dict(embed_dim=32, depth=2, num_heads=2, pretrain_size=64)
    model = dict(ViTBaseline=lambda: ViTBaseline(**small, out_indices=[0, 0, 1, 1]),
                 ViTDet=lambda: ViTDet(**small, window_size=2, window_block_indexes=[0],
                                       out_channels=16),
                 STA=lambda: STA(**small, arch='tiny', interaction_indexes=[0, 1, 1],
                                 conv_inplane=8))[protocol]().eval()
    img = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        program = torch.onnx.export(model, (img,), dynamo=True, verbose=False)
        expected = model(img)
    got = onnxruntime_outputs(program.model_proto.SerializeToString(), img)
    for ours, ref in zip(got, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(ours), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('scheme', ['RelPosBias', 'SPSA', 'RoPEMixed'])
def test_the_torchscript_exporter_too(scheme, tmp_path):
    model = vit(scheme)
    img = torch.randn(2, 3, 32, 40)
    path = str(tmp_path / 'model.onnx')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter's deprecation notice
        torch.onnx.export(model, (img,), path, dynamo=False)
        expected, = model(img)
    onnx.checker.check_model(path)
    got, = onnxruntime_outputs(path, img)
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=1e-4)


def test_torch_export_of_the_adapter_with_dynamic_sizes():
    model = ViTAdapter(embed_dim=32, depth=2, num_heads=2, deform_num_heads=2, conv_inplane=8,
                       pretrain_size=64, interaction_indexes=[[0, 0], [1, 1]],
                       pos_embed=dict(type='RoPEMixedAPE')).eval()
    auto = torch.export.Dim.AUTO
    with torch.no_grad():
        exported = torch.export.export(model, (torch.randn(2, 3, 64, 96),),
                                       dynamic_shapes=({0: auto, 2: auto, 3: auto},))
        for shape in [(2, 3, 64, 96), (3, 3, 96, 160)]:
            img = torch.randn(shape)
            for a, b in zip(exported.module()(img), model(img)):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_export_tool_checks_backbone_and_neck_at_two_sizes(tmp_path):
    out = tmp_path / 'det.onnx'
    done = subprocess.run(
        [sys.executable, 'tools/deployment/export_onnx.py',
         'configs/demo/mask-rcnn_vit-adapter-t-mpvg_fpn_demo.py', '--shape', '64', '96',
         '--dynamic', '--with-neck', '--out', str(out), '--cfg-options',
         'model.backbone.embed_dim=32', 'model.backbone.num_heads=2', 'model.backbone.depth=2',
         'model.backbone.deform_num_heads=2', 'model.backbone.conv_inplane=8',
         'model.backbone.interaction_indexes=[[0,0],[1,1]]', 'model.backbone.window_size=2',
         'model.backbone.window_block_indexes=[0]', 'model.neck.in_channels=[32,32,32,32]'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert 'onnx.checker: ok' in done.stdout
    assert 'export size: input (2, 3, 64, 96)' in done.stdout
    assert 'another size: input (3, 3, 96, 160)' in done.stdout
    assert done.stdout.count('(ok)') == 2
    onnx.checker.check_model(str(out))
