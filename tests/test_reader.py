"""Reading checkpoint files (mmvitpe.weights.read_state_dict, and mmengine's loader
through it): a hostile, damaged or foreign file ends in an error naming the file,
never in running its code, a crash, a hang or unbounded memory."""
import contextlib
import os
import pickle
import resource
import signal

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

from helpers import RunsCode, write_truncated_checkpoint
from mmvitpe.models import PEViT
from mmvitpe.weights import CheckpointError, read_state_dict


def _cyclic(path):
    d = {'w': torch.zeros(2)}
    d['state_dict'] = d
    torch.save(d, path)


def _deep(path):
    d = {'w': torch.zeros(2)}
    for _ in range(12):
        d = {'state_dict': d}
    torch.save(d, path)


def _expanded(path):
    # 1.8 KB on disk, (1, 1 + 4000^2, 32) fp16 positions: 1 GiB once materialised
    torch.save({'pos_embed': torch.zeros(1, 1, 32, dtype=torch.half).expand(1, 1 + 4000 ** 2, 32),
                'cls_token': torch.zeros(1, 1, 32)}, path)


HOSTILE_FILES = {
    # name: (writer, error message)
    'cyclic': (_cyclic, r'its container refers to itself'),
    'deep': (_deep, r'containers nested deeper than 8 levels'),
    'expanded': (_expanded, r"'pos_embed' is a \(1, 16000001, 32\) view of 64 stored bytes"),
    'zero-bytes': (lambda p: open(p, 'wb').close(),
                   r'truncated or not a PyTorch checkpoint \(0 bytes\).*copy or download it '
                   r'again'),
    'random-bytes': (lambda p: open(p, 'wb').write(np.random.default_rng(0).bytes(4096)),
                     r'(not a readable|truncated or not a) PyTorch checkpoint'),
    'truncated': (write_truncated_checkpoint,
                  r'truncated or not a PyTorch checkpoint.*delete it'),
    'duplicate-module-key': (
        lambda p: torch.save({'w': torch.zeros(2), 'module.w': torch.ones(2)}, p),
        r"'w' and 'module.w' are both present and name the same parameter"),
}


@contextlib.contextmanager
def deadline(seconds):
    """Fail instead of hanging (the cyclic file looped forever before)."""
    def expire(*_):
        raise TimeoutError(f'still running after {seconds} s')
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize('reader', ['read_state_dict', 'mmengine'])
@pytest.mark.parametrize('kind', sorted(HOSTILE_FILES))
def test_hostile_file_ends_in_an_error_naming_the_file(tmp_path, kind, reader):
    """Our reader and mmengine's loader (--resume, load_from, tools/test.py) alike."""
    write, message = HOSTILE_FILES[kind]
    path = str(tmp_path / f'{kind}.pth')
    write(path)
    load = read_state_dict if reader == 'read_state_dict' else _load_checkpoint
    with deadline(30), pytest.raises(CheckpointError, match=message) as err:
        load(path)
    assert path in str(err.value)


@pytest.mark.parametrize('value,kind', [
    (np.zeros((1, 4, 32), dtype=np.float32), 'numpy.ndarray'), ([0.1, 0.2], 'list'),
    (3, 'int'), ('zeros', 'str')], ids=['numpy', 'list', 'int', 'str'])
def test_non_tensor_under_a_parameter_key_is_named(tmp_path, value, kind):
    path = str(tmp_path / 'w.pth')
    torch.save({'state_dict': {'blocks.0.norm1.weight': torch.ones(32), 'pos_embed': value}},
               path)
    with pytest.raises(CheckpointError, match=rf"{path}: 'pos_embed' holds a value of type "
                                              rf'{kind}, not a tensor'):
        read_state_dict(path)


def test_expanded_table_is_refused_before_any_copy_with_bounded_memory(tmp_path):
    path = str(tmp_path / 'huge_pos_embed.pth')
    _expanded(path)
    assert os.path.getsize(path) < 4096
    model = PEViT(embed_dim=32, depth=1, num_heads=4, pretrain_size=64, class_token=True,
                  init_cfg=dict(type='Pretrained', checkpoint=path))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(CheckpointError, match=r"'pos_embed' is a \(1, 16000001, 32\) view"):
        model.init_weights()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_unsafe_truncated_and_foreign_files_give_clear_errors(tmp_path):
    evil = tmp_path / 'evil.pth'
    ran = tmp_path / 'payload_ran'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': RunsCode(ran)}, evil)
    with pytest.raises(CheckpointError, match=r"refused, the file pickles '(builtins\.)?exec'"):
        read_state_dict(str(evil))
    assert not ran.exists()
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.zeros(100)}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint'):
        read_state_dict(str(truncated))
    text = tmp_path / 'notes.pth'
    text.write_text('these are not weights')
    with pytest.raises(CheckpointError, match='notes.pth'):
        read_state_dict(str(text))
    empty = tmp_path / 'empty.pth'
    torch.save({'epoch': 3}, empty)
    with pytest.raises(CheckpointError,
                       match=r"holds no weights \(no tensors among its entries \['epoch'\]\)"):
        read_state_dict(str(empty))
    bad_st = tmp_path / 'bad.safetensors'
    bad_st.write_bytes(b'\x00' * 16)
    with pytest.raises(CheckpointError, match='not a valid safetensors file'):
        read_state_dict(str(bad_st))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        read_state_dict(str(tmp_path / 'missing.pth'))
    # the payload does run when unpickled without the reader's refusal
    pickle.loads(pickle.dumps(RunsCode(ran)))
    assert ran.exists()


def test_weights_under_another_entry_a_stray_entry_and_a_directory_are_named(tmp_path):
    weights = {'blocks.0.attn.qkv.weight': torch.zeros(3)}
    ema_only = tmp_path / 'ema.pth'
    torch.save({'model_ema': weights, 'epoch': 3}, ema_only)
    with pytest.raises(CheckpointError, match=r"holds no weights \(no tensors among its entries "
                                              r"\['model_ema', 'epoch'\]\); .* or give key= one "
                                              r"of \['model_ema'\]"):
        read_state_dict(str(ema_only))
    assert read_state_dict(str(ema_only), key='model_ema').keys() == weights.keys()
    beside = tmp_path / 'beside.pth'
    torch.save({**weights, 'model_ema': weights}, beside)
    with pytest.raises(CheckpointError, match=r"'model_ema' holds a dict of weights beside the "
                                              r"state dict's tensors; give key='model_ema'"):
        read_state_dict(str(beside))
    stray = tmp_path / 'stray.pth'
    torch.save({'notes': 'trained on a Tuesday', 'epoch': 3}, stray)
    with pytest.raises(CheckpointError, match=r"holds no weights \(no tensors among its entries "
                                              r"\['notes', 'epoch'\]\)"):
        read_state_dict(str(stray))
    for path in (str(tmp_path), str(tmp_path / 'dir.safetensors')):
        os.makedirs(path, exist_ok=True)
        with pytest.raises(CheckpointError, match=f'{path}: is a directory without a '
                                                  'config.json, not a Hugging Face model '
                                                  'directory; give the checkpoint file'):
            read_state_dict(path)
