"""tools/benchmark_eomt.py at its tiny setting: EoMT against ViT-Adapter with UperNet
and with Mask2Former."""
import csv
import math
import os
import subprocess
import sys

import pytest

from helpers import REPO

TOOL = 'tools/benchmark_eomt.py'
TINY = ['--tiny', '--size', '64', '--batch', '2']
VARIANTS = ['EoMT', 'ViTAdapter+UperNet', 'ViTAdapter+Mask2Former']


def run_tool(*args, timeout=300):
    # one intra-op thread: the tiny models gain nothing from a second one, and on a busy
    # machine its synchronisation made the run several times slower
    return subprocess.run([sys.executable, TOOL, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS='1'))


def test_times_inference_and_a_training_step_as_ratios_to_mask2former(tmp_path):
    # memory is measured apart below: its fresh process per variant triples the run
    out = tmp_path / 'out.csv'
    done = run_tool(*TINY, '--repeats', '1', '--warmup', '1', '--no-memory', '--csv', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out, newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['variant'] for r in rows] == VARIANTS
    assert all(float(r[key]) > 0 for r in rows for key in ('params_m', 'infer_ms', 'train_ms'))
    baseline = rows[-1]
    assert float(baseline['infer_ratio']) == float(baseline['train_ratio']) == 1.0
    assert all(math.isnan(float(r['memory_mib'])) for r in rows)
    assert 'EoMT inference: ' in done.stdout and '(target <= 0.5: ' in done.stdout
    assert 'paramwise_options' not in done.stdout  # the table is not buried in logs


def test_memory_worker_measures_one_training_step(tmp_path):
    out = tmp_path / 'memory'
    done = run_tool(*TINY, '--memory-worker', 'EoMT', '--memory-file', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(out.read_text()) > 0


@pytest.mark.parametrize('option,message', [
    (['--repeats', '0'], '--repeats must be at least 1, got 0'),
    (['--batch', '0'], '--batch must be at least 1, got 0'),
    (['--warmup', '-1'], '--warmup must be 0 or more, got -1'),
    (['--size', '48'], '--size must be a positive multiple of 32'),
    (['--device', 'tpu'], "argument --device: invalid choice: 'tpu' (choose from")])
def test_a_bad_argument_is_named(option, message):
    done = run_tool(*option, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert option[1] in done.stderr
