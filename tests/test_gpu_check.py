"""tools/gpu_check.py: its dry run on CPU, its time budget, and its wheel set."""
import csv
import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tools'))
import gpu_check  # noqa: E402


def test_dry_run_on_cpu_runs_and_reports_every_part(tmp_path):
    path = os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, PYTHONPATH=path)
    # a budget that no busy machine runs out of: the budget has its own tests below
    results = tmp_path.parent / f'{tmp_path.name}_results'
    done = subprocess.run([sys.executable, 'tools/gpu_check.py', '--device', 'cpu', '--quick',
                           '--budget', '1200', '--out', str(tmp_path),
                           '--results-dir', str(results)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1300)
    report = json.loads((tmp_path / 'report.json').read_text())
    parts = report['parts']
    assert done.returncode == 0, (done.stdout[-2000:],
                                  {n: p.get('log_tail') for n, p in parts.items()})
    assert list(parts) == ['env', 'tests', 'pe_64', 'adapter']
    assert {n: p['status'] for n, p in parts.items()} == dict.fromkeys(parts, 'ok')
    assert report['skipped'] == []

    info = parts['env']['info']
    assert info['mmvitpe_import'] == 'ok' and info['torch'] == torch.__version__
    assert info['deformable_attention_ops']  # the path one ViT-Adapter step took

    tests = parts['tests']
    assert tests['counts']['failed'] == tests['counts']['errors'] == 0
    # NoPE's cases of one PE-core test (no prefix token, class token, class + 4 registers)
    # and of one adapter test
    assert tests['counts']['passed'] == 4
    assert '-m cpu' in tests['command']

    rows = {r['scheme']: r for r in parts['pe_64']['rows']}
    assert list(rows) == ['NoPE', 'RelPosBias']
    assert rows['NoPE']['train_ratio'] == 1.0 and rows['RelPosBias']['target'] == 1.08
    assert isinstance(rows['RelPosBias']['meets_target'], bool)
    assert any(line.startswith('| learned additive bias') for line in parts['pe_64']['kernel_cost'])

    (adapter,) = parts['adapter']['rows']
    assert adapter['variant'] == 'ours:NoPE' and adapter['train_ms'] > 0
    assert adapter['memory_mib'] is None  # --quick measures no memory: reported as such

    md = (tmp_path / 'report.md').read_text()
    for heading in ('## Environment', '## Tests', '## PE overhead in the ViT core (pe_64)',
                    '## ViT-Adapter-T step'):
        assert heading in md
    assert sorted(os.listdir(tmp_path)) == ['adapter.log', 'env.log', 'pe_64.log', 'report.json',
                                            'report.md', 'tests.log']
    # the benchmarks' tables, as the report has them, in --results-dir
    version = torch.__version__.split('+')[0]
    written = sorted(os.listdir(results))
    assert [name.split('_')[0] for name in written] == ['adapter-seg-64px-batch1',
                                                       'pe-tiny-64px-batch1-bf16']
    assert all(name.endswith(f'_torch{version}.csv') for name in written)
    with open(results / written[1]) as f:
        assert [row['scheme'] for row in csv.DictReader(f)] == list(rows)


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_part_past_its_cap_is_stopped_with_its_children(tmp_path):
    spawn_and_sleep = ('import subprocess, sys, time\n'
                       'child = subprocess.Popen([sys.executable, "-c",'
                       ' "import time; time.sleep(60)"])\n'
                       'print("child", child.pid, flush=True)\n'
                       'time.sleep(60)\n')
    part = gpu_check.Part('slow', [sys.executable, '-c', spawn_and_sleep], cap_s=3, min_s=0)
    start = time.monotonic()
    result = gpu_check.run_part(part, time.monotonic() + 100, str(tmp_path))
    assert time.monotonic() - start < 20
    assert result['status'] == 'stopped' and result['reason'] == 'ran past 3 s (its cap)'
    log = (tmp_path / 'slow.log').read_text()
    child = int(re.search(r'child (\d+)', log).group(1))
    time.sleep(0.5)
    assert not _alive(child)
    assert 'child' in result['log_tail'][-1]

    late = gpu_check.run_part(gpu_check.Part('late', ['true'], cap_s=60, min_s=30),
                              time.monotonic() + 10, str(tmp_path))
    assert late['status'] == 'skipped'
    assert late['reason'] == '10 s of the budget left, 30 s needed to start'
    assert not (tmp_path / 'late.log').exists()


def test_an_exhausted_budget_skips_every_part_and_says_so(tmp_path):
    assert gpu_check.main(['--device', 'cpu', '--budget', '0.001', '--out', str(tmp_path)]) == 2
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['skipped'] == ['env', 'tests', 'pe_512', 'pe_1024', 'adapter']
    md = (tmp_path / 'report.md').read_text()
    assert '| adapter | skipped | – | – | 0 s of the budget left, 45 s needed to start |' in md


@pytest.mark.parametrize('budget', ['0', '-5', 'nan', 'inf', 'ten'])
def test_a_budget_that_is_not_a_positive_finite_number_is_refused(capsys, tmp_path, budget):
    with pytest.raises(SystemExit) as exited:
        gpu_check.main(['--device', 'cpu', '--budget', budget, '--out', str(tmp_path)])
    assert exited.value.code == 2
    assert (f"argument --budget: {budget!r} is not a positive, finite number of seconds"
            in capsys.readouterr().err)
    assert os.listdir(tmp_path) == []


def test_a_results_dir_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / 'taken').write_text('')
    with pytest.raises(SystemExit):
        gpu_check.main(['--device', 'cpu', '--results-dir', str(tmp_path / 'taken'),
                        '--out', str(tmp_path / 'out')])
    taken = str(tmp_path / 'taken')
    assert f'argument --results-dir: {taken!r} exists and is not a directory' in \
        capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_cuda_without_a_device_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(['--device', 'cuda'])
    assert '--device cuda: torch sees no CUDA device here' in capsys.readouterr().err


def test_offline_wheels_are_pinned_as_the_constraints():
    with open(os.path.join(REPO, 'tools', 'gpu', 'fetch_wheels.sh')) as f:
        script = f.read()
    wheels = dict(re.findall(r'^\s+([\w-]+)==([\w.]+)', script, re.M))
    with open(os.path.join(REPO, 'requirements', 'constraints.txt')) as f:
        pins = dict(re.findall(r'^([\w-]+)==([\w.]+)', f.read(), re.M))
    assert wheels['mmcv-lite'] == pins['mmcv']  # the Python part of the same mmcv
    for name in ('mmengine', 'timm'):
        assert wheels[name] == pins[name], name
