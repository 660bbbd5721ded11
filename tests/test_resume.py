"""Resuming a run (tools/train.py --resume, resume=True): which checkpoint it continues
from, what it refuses, and a run killed mid-training finishing from its checkpoint."""
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch
from mmengine.config import Config

from helpers import (REPO, SEG, run, seg_options, tiny_vit, tiny_vit_with_pe, train_cmd,
                     write_truncated_checkpoint)
from mmvitpe.apis import apply_resume_policy, check_resume_fits, read_training_checkpoint
from mmvitpe.weights import CheckpointError


def test_resume_refuses_a_bare_state_dict_pointing_to_load_from(tmp_path):
    path = str(tmp_path / 'deit.pth')
    torch.save({'model': tiny_vit().state_dict()}, path)  # as DeiT/timm release them
    cfg = Config(dict(resume=True, load_from=path, work_dir=str(tmp_path)))
    with pytest.raises(CheckpointError, match=rf'{path} is not a resumable training checkpoint'
                                              r'.*load_from=.*init_cfg.checkpoint='):
        apply_resume_policy(cfg)


def training_checkpoint(model, scheme_text, iteration=2):
    """What tools/train.py saves, for ``model`` trained with the scheme ``scheme_text``."""
    return {'meta': {'epoch': 0, 'iter': iteration,
                     'cfg': f"model = dict(backbone=dict(pos_embed=dict(type='{scheme_text}')))"},
            'state_dict': model.state_dict(), 'message_hub': {}}


@pytest.mark.parametrize('saved,now,message', [
    ('NoPE', 'SinCosPE', r"trained with the positional encoding \['NoPE'\], the model now uses "
                         r"\['SinCosPE'\]"),
    ('LearnedPE', 'RoPEMixed', r"trained with the positional encoding \['LearnedPE'\]"),
], ids=['parameter-free-switch', 'parameter-switch'])
def test_resume_detects_a_switched_scheme(saved, now, message):
    checkpoint = training_checkpoint(tiny_vit_with_pe(saved), saved)
    with pytest.raises(CheckpointError, match=message + r'.*load_from=ckpt.pth without --resume'):
        check_resume_fits(tiny_vit_with_pe(now), checkpoint, 'ckpt.pth')
    checkpoint['meta']['cfg'] = ''  # an older config text: the tensors still tell
    if saved == 'LearnedPE':
        with pytest.raises(CheckpointError, match=r'The positional encoding changed .*'
                                                  r'pe.table.weight.*pe.freqs'):
            check_resume_fits(tiny_vit_with_pe(now), checkpoint, 'ckpt.pth')
    # the same scheme fits (no error)
    check_resume_fits(tiny_vit_with_pe(saved),
                      training_checkpoint(tiny_vit_with_pe(saved), saved), 'ckpt.pth')


@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):
    """A tiny segmentation run with checkpoints at iterations 2 and 4."""
    work_dir = tmp_path_factory.mktemp('run')
    run(train_cmd(SEG, work_dir, seg_options(demo_data, iters=4, checkpoint_every=2)))
    return work_dir


def test_resume_without_marker_continues_from_the_newest_and_keeps_the_rest(
        trained, demo_data, tmp_path):
    work_dir = tmp_path / 'run'
    shutil.copytree(trained, work_dir)
    os.remove(work_dir / 'last_checkpoint')
    kept = {n: os.stat(work_dir / n).st_mtime_ns for n in ('iter_2.pth', 'iter_4.pth')}
    out = run(train_cmd(SEG, work_dir, seg_options(demo_data, iters=6, checkpoint_every=2))
              + ['--resume'])
    text = out.stdout + out.stderr
    assert 'resuming from its newest readable checkpoint' in text
    assert 'resumed epoch: 0, iter: 4' in text
    assert {n: os.stat(work_dir / n).st_mtime_ns for n in kept} == kept
    assert (work_dir / 'iter_6.pth').exists()


def test_auto_resume_with_damaged_checkpoints_says_what_to_do(trained, tmp_path):
    work_dir = tmp_path / 'run'
    shutil.copytree(trained, work_dir)
    cfg = Config(dict(resume=True, load_from=None, work_dir=str(work_dir)))
    latest = str(work_dir / 'iter_4.pth')
    (work_dir / 'last_checkpoint').write_text(latest)  # the copy's, not the original run's
    write_truncated_checkpoint(latest)
    with pytest.raises(CheckpointError, match=rf'{latest}: truncated .*delete it \(and the work '
                                              r"dir's last_checkpoint file\)"):
        apply_resume_policy(cfg)
    os.remove(work_dir / 'last_checkpoint')  # without the marker: the newest readable one
    assert apply_resume_policy(cfg) == str(work_dir / 'iter_2.pth')
    assert read_training_checkpoint(cfg.load_from)['meta']['iter'] == 2
    write_truncated_checkpoint(str(work_dir / 'iter_2.pth'))
    cfg.load_from = None
    with pytest.raises(CheckpointError, match=r'(?s)holds checkpoints but no last_checkpoint file '
                                              r'and no readable training checkpoint.*would '
                                              r'overwrite'):
        apply_resume_policy(cfg)


def test_a_killed_run_resumes(demo_data, tmp_path):
    """Kill -9 after a checkpoint, then --resume finishes from it (torch >= 2.6 loading)."""
    cmd = train_cmd(SEG, tmp_path, seg_options(demo_data, iters=200, checkpoint_every=2))
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(tmp_path / 'last_checkpoint') and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)  # let the checkpoint file be complete before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = open(tmp_path / 'last_checkpoint').read().strip()
    done = int(last.rsplit('iter_', 1)[1].split('.')[0])
    target = done + 2
    out = run(train_cmd(SEG, tmp_path, seg_options(demo_data, iters=target, checkpoint_every=2))
              + ['--resume'])
    assert f'resumed epoch: 0, iter: {done}' in out.stdout + out.stderr
    assert os.path.exists(tmp_path / f'iter_{target}.pth')

