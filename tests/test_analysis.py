"""The analysis library and its command-line tools."""
import argparse
import csv
import os
import re
import subprocess
import sys

import pytest
import torch

from mmvitpe.analysis import (absolute_table, complexity, correlation_rows,
                              cosine_similarity_maps, pearson, relative_maps, resolution_sweep,
                              rope_frequency_rows, token_and_pe_per_layer)
from mmvitpe.models import PEViT, ViTAdapter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/demo/upernet_vit-adapter-t-mpvg_demo.py'
TINY = ['model.backbone.embed_dim=64', 'model.backbone.num_heads=4', 'model.backbone.depth=4',
        'model.backbone.deform_num_heads=4', 'model.backbone.conv_inplane=8',
        'model.backbone.interaction_indexes=[[0,0],[1,1],[2,2],[3,3]]']


def vit(scheme, **kw):
    return PEViT(embed_dim=32, depth=3, num_heads=4, patch_size=8, pretrain_size=64,
                 pos_embed=dict(type=scheme), **kw).eval()


def test_pearson_known_values():
    x = torch.randn(50, 8)
    assert pearson(x, x) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert abs(pearson(x, torch.randn(50, 8))) < 0.3


def test_layerwise_correlations_cover_every_layer():
    layers = token_and_pe_per_layer(vit('LaPE'), torch.randn(2, 3, 64, 64))
    assert len(layers) == 3 and layers[0]['pe'].shape == layers[0]['tokens'].shape == (64, 32)
    rows = correlation_rows(layers)
    assert [r['layer'] for r in rows] == [0, 1, 2]
    assert all(-1 <= r['correlation'] <= 1 for r in rows)
    # no PE: no correlation to report
    assert all(r['correlation'] != r['correlation'] for r in correlation_rows(
        token_and_pe_per_layer(vit('NoPE'), torch.randn(1, 3, 64, 64))))


def test_similarity_map_is_one_at_its_own_position():
    model = vit('LearnedPE')
    table = absolute_table(model, (8, 8))
    maps = cosine_similarity_maps(table, (8, 8), [(0, 0), (3, 5)])
    assert maps.shape == (2, 8, 8)
    assert maps[0, 0, 0] == pytest.approx(1.0) and maps[1, 3, 5] == pytest.approx(1.0)
    assert maps.max() <= 1 + 1e-5


def test_relative_maps_at_init():
    spsa = relative_maps(vit('SPSA'), (5, 7))
    assert set(spsa) == {'block0', 'block1', 'block2'}
    assert spsa['block0'].shape == (4, 9, 13) and torch.equal(spsa['block0'], torch.ones(4, 9, 13))
    rpb = relative_maps(vit('RelPosBias'), (5, 7))
    assert rpb['block1'].shape == (4, 15, 15) and not rpb['block1'].any()  # table grid 8x8
    assert not any(m.requires_grad for m in [*spsa.values(), *rpb.values()])  # drawable
    assert relative_maps(vit('LaPE'), (5, 7)) == {}


def test_relative_maps_of_the_fixed_biases():
    alibi = relative_maps(vit('ALiBi2D'), (5, 7))['every block']  # one map for all blocks
    assert alibi.shape == (4, 9, 13) and (alibi[:, 4, 6] == 0).all() and (alibi <= 0).all()
    assert alibi[0, 4, 9] == pytest.approx(-3 * 2 ** -2)  # 3 patches right, slope 1/4
    lookhere = relative_maps(vit('LookHere'), (5, 7))
    assert set(lookhere) == {'block0', 'block1', 'block2'}
    up = lookhere['block0'][0]  # head 0 looks up: NaN (not drawn) below the query row
    assert up[5:].isnan().all() and not up[:5].isnan().any()


def test_rope_frequency_rows():
    assert len(rope_frequency_rows(vit('RoPEMixed'))) == 3 * 4 * 4  # depth x heads x d/2
    axial = rope_frequency_rows(vit('RoPEAxial'))
    assert len(axial) == 4 and {r['angle_deg'] for r in axial} == {0.0, 90.0}
    assert rope_frequency_rows(vit('PEG')) == []
    for scheme in ('RoPEDINOv3', 'RoPEEVA02'):  # axial: pairs turn with x or with y
        rows = rope_frequency_rows(vit(scheme))
        assert len(rows) == 4 and {r['angle_deg'] for r in rows} == {0.0, 90.0}


def test_resolution_sweep_is_exact_at_the_reference_size():
    model = ViTAdapter(embed_dim=64, depth=4, num_heads=4, deform_num_heads=4, conv_inplane=8,
                       interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]).eval()
    rows = resolution_sweep(model, torch.randn(1, 3, 64, 64), [64, 96], reference=64)
    assert len(rows) == 8
    assert all(r['cosine'] == pytest.approx(1.0) for r in rows if r['size'] == 64)
    assert all(r['cosine'] < 0.9999 for r in rows if r['size'] == 96)


def test_complexity_counts_params_and_flops():
    none, rope = complexity(vit('NoPE'), torch.randn(1, 3, 64, 64)), complexity(
        vit('RoPEMixed'), torch.randn(1, 3, 64, 64))
    assert none['pe_params'] == 0 and rope['pe_params'] == 2 * 3 * 4 * 4
    assert none['gflops'] > 0 and none['params'] == sum(p.numel() for p in vit('NoPE').parameters())


def _valid_png(path):
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89PNG\r\n\x1a\n' and os.path.getsize(path) > 1000


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('tool,options,files', [
    ('pe_correlation.py', [], {'pe_correlation.csv': 4, 'pe_correlation.png': None,
                               'pe_heatmaps.png': None}),
    ('pe_maps.py', ['--grid', '4'], {'pe_similarity.csv': 6 * 16, 'pe_similarity.png': None}),
    # 4 blocks x 4 heads x the 7x7 offsets of the 4x4 table (pretraining size 64 / patch 16)
    ('pe_maps.py', ['--grid', '4', 'model.backbone.pos_embed.type=RelPosBias'],
     {'relative_maps.csv': 4 * 4 * 7 * 7, 'relative_maps.png': None}),
    ('resolution_sweep.py', ['--schemes', 'MPVG', 'RoPEAxial', '--sizes', '64', '96',
                             '--reference', '64', '--size', '64'],
     {'resolution_sweep.csv': 2 * 2 * 4, 'resolution_sweep.png': None}),
    ('complexity.py', ['--schemes', 'NoPE', 'SPSA', '--size', '64'],
     {'complexity.csv': 2, 'complexity.png': None}),
])
def test_tools_write_valid_png_and_csv(tmp_path, tool, options, files):
    flags = [o for o in options if '=' not in o]
    cmd = [sys.executable, f'tools/analysis/{tool}', CONFIG, '--out', str(tmp_path), '--size',
           '64', *flags, '--cfg-options', *TINY, 'model.backbone.pretrain_size=64',
           *(o for o in options if '=' in o)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, rows in files.items():
        path = tmp_path / name
        if rows is None:
            assert _valid_png(path), name
        else:
            assert len(_csv_rows(path)) == rows, name


def _run_tool(args, tmp_path, env=None):
    """Run a benchmark with --csv and --results-dir; its stdout and its rows, after
    checking that the results file holds the same table."""
    results = tmp_path / 'results'
    before = set(os.listdir(results)) if results.exists() else set()
    done = subprocess.run([sys.executable, *args, '--csv', str(tmp_path / 'out.csv'),
                           '--results-dir', str(results)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _csv_rows(tmp_path / 'out.csv')
    (written,) = set(os.listdir(results)) - before
    assert f'results: {results / written}' in done.stdout
    assert _csv_rows(results / written) == rows
    return done.stdout, rows


# tiny sizes; the PE benchmark with two schemes whose kernel costs it implies
SMOKE = {'tools/benchmark_pe.py': ['--size', '64', '--repeats', '1', '--warmup', '1',
                                   '--schemes', 'SPSA', 'RelPosBias'],
         'tools/benchmark_adapter.py': ['--size', '64', '--batch', '1', '--memory-size', '64',
                                        '--repeats', '1', '--warmup', '1'],
         'tools/benchmark_ms_deform_attn.py': ['--size', '64', '--repeats', '1', '--warmup', '0'],
         'tools/benchmark_eomt.py': ['--tiny', '--size', '64', '--repeats', '1', '--warmup', '1']}


def documented_benchmark_commands():
    """The benchmark commands of docs/benchmarks.md's code blocks: without the
    original's checkout (CI has none), their optional ``[...]`` parts, and those
    for a GPU where there is none."""
    with open(os.path.join(REPO, 'docs', 'benchmarks.md')) as f:
        blocks = '\n'.join(re.findall(r'^```[^\n]*\n(.*?)^```', f.read(), re.M | re.S))
    commands = []
    for line in blocks.replace('\\\n', ' ').splitlines():
        found = re.search(r'python (tools/benchmark_\w+\.py)([^#]*)', line)
        if not found or ('--device cuda' in line and not torch.cuda.is_available()):
            continue
        tool, args = found.groups()
        # --no-memory too: the memory worker is measured as well, at the tiny size
        args = re.sub(r'\[[^\]]*\]|--original \S+|--no-memory', '', args)
        # a scheme list shortened to its first: each compiled variant traces for ~20 s
        args = re.sub(r'(--schemes \S+)(?: [A-Z]\S*)*', r'\1', args)
        # inductor compiles for minutes on CPU; aot_eager runs the same variants
        args = re.sub(r'--compile(?=\s+--|\s*$)', '--compile aot_eager', args)
        commands.append([tool, *args.split()])
    return commands


@pytest.fixture(scope='module')
def documented_runs(tmp_path_factory):
    """Each documented benchmark command at a tiny size: {command line: (stdout, rows)}.
    Every interpreter starts by printing numbers and words, as a first build of the
    CPU kernel logs: the workers must still deliver their numbers, over a channel of
    their own."""
    noise = tmp_path_factory.mktemp('noise')
    (noise / 'sitecustomize.py').write_text(
        "import sys\n"
        "if '--worker' in sys.argv:\n"
        "    print('ready 129')\n"
        "    print('built the CPU deformable-attention kernel in 129 s', flush=True)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(noise), os.environ.get('PYTHONPATH')])))
    runs = {}
    for command in documented_benchmark_commands():
        out_dir = tmp_path_factory.mktemp('run')
        runs[' '.join(command)] = _run_tool([*command, *SMOKE[command[0]]], out_dir, env=env)
    return runs


def documented_run(runs, tool, *options):
    """The stdout and rows of the one documented command of ``tool`` with ``options``."""
    (found,) = [run for line, run in runs.items()
                if line.startswith(tool) and all(o in line.split() for o in options)]
    return found


def test_the_documented_benchmark_commands_run(documented_runs):
    assert {line.split()[0] for line in documented_runs} == set(SMOKE)
    assert len(documented_runs) >= 4
    for out, rows in documented_runs.values():
        assert rows and 'built the CPU' not in out  # the workers' stdout went to stderr


def test_pe_benchmark_reports_ratios_and_kernel_costs(documented_runs):
    out, rows = documented_run(documented_runs, 'tools/benchmark_pe.py', '--kernel-cost')
    assert [r['scheme'] for r in rows] == ['NoPE', 'SPSA', 'RelPosBias']
    assert float(rows[0]['train_ratio']) == 1.0
    implied = [line.split('|') for line in out.splitlines() if line.startswith('| learned ')]
    assert len(implied) == 2 and all(float(r[3]) > 0 and float(r[5]) > 0 for r in implied)


def test_op_benchmark_times_every_cpu_path_against_grid_sample(documented_runs):
    _, rows = documented_run(documented_runs, 'tools/benchmark_ms_deform_attn.py')
    assert [(r['case'], r['path']) for r in rows] == [
        (case, path) for case in ('injector', 'extractor')
        for path in ('grid_sample', 'gather', 'compiled')]
    assert all(float(r['fwd_ms']) > 0 and float(r['fwd_bwd_ms']) > 0 for r in rows)
    assert {float(r['fwd_ratio']) for r in rows if r['path'] == 'grid_sample'} == {1.0}


def test_adapter_benchmark_reports_compiled_variants_with_their_compile_time(documented_runs):
    out, rows = documented_run(documented_runs, 'tools/benchmark_adapter.py', '--compile')
    assert [r['variant'] for r in rows] == ['ours:LearnedPE', 'compiled:LearnedPE']
    assert all(float(r['train_ms']) > 0 for r in rows)
    assert float(rows[0]['memory_mib']) > 0 and rows[1]['memory_mib'] == 'nan'
    assert re.search(r'compiled:LearnedPE: compile time [\d.]+ s .*aot_eager', out), out


def test_adapter_benchmark_times_protocols_as_ratios_to_the_first_on_each_trunk(tmp_path):
    out, rows = _run_tool(['tools/benchmark_adapter.py', '--protocols', 'ViTBaseline', 'STA',
                           '--archs', 'tiny', '--size', '64', '--batch', '1', '--repeats', '1',
                           '--warmup', '0', '--memory-size', '64'], tmp_path)
    assert [r['variant'] for r in rows] == ['ViTBaseline:tiny', 'STA:tiny']
    assert float(rows[0]['train_ratio']) == float(rows[0]['memory_ratio']) == 1.0
    assert all(float(r['train_ms']) > 0 and float(r['memory_mib']) > 0 for r in rows)
    assert 'protocols on tiny' in out and 'fwd+bwd × ViTBaseline' in out


def test_adapter_benchmark_breakdown_accounts_for_the_whole_step(documented_runs):
    _, rows = documented_run(documented_runs, 'tools/benchmark_adapter.py', '--breakdown')
    assert [r['part'] for r in rows] == ['spm', 'vit_blocks', 'injectors', 'extractors', 'rest',
                                         'full step']
    ms = {r['part']: float(r['ours:LearnedPE_ms']) for r in rows}
    assert all(0 < ms[part] < ms['full step']
               for part in ('spm', 'vit_blocks', 'injectors', 'extractors'))
    assert all(float(r['ours:LearnedPE_gflop']) > 0 for r in rows[:4])


def _cpu_model_slug():
    with open('/proc/cpuinfo') as f:
        names = re.findall(r'^model name\s*:\s*(.+)$', f.read(), re.M)
    return re.sub(r'[^a-z0-9]+', '-', names[0].lower()).strip('-')


@pytest.mark.skipif(not os.path.exists('/proc/cpuinfo'), reason='names the CPU from /proc')
def test_results_dir_gets_one_file_per_benchmark_machine_and_torch(tmp_path):
    results = tmp_path / 'new' / 'results'  # made where missing
    args = ['tools/benchmark_ms_deform_attn.py', '--size', '64', '--batch', '1', '--repeats',
            '1', '--warmup', '0', '--csv', str(tmp_path / 'out.csv')]
    for _ in range(2):  # a second run replaces the file, and says so
        done = subprocess.run([sys.executable, *args, '--results-dir', str(results)], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    version = torch.__version__.split('+')[0]
    name = f'ms_deform_attn-64px-batch1_{_cpu_model_slug()}_torch{version}.csv'
    assert os.listdir(results) == [name]  # no temporary file left beside it
    assert f'results: {results / name} (replaced the earlier file)' in done.stdout
    assert re.fullmatch(r'[a-z0-9_.-]+', name)
    rows = _csv_rows(results / name)
    assert list(rows[0]) == ['case', 'path', 'fwd_ms', 'fwd_ratio', 'fwd_bwd_ms', 'fwd_bwd_ratio']
    assert rows == _csv_rows(tmp_path / 'out.csv')


@pytest.mark.parametrize('tool', ['tools/benchmark_pe.py', 'tools/benchmark_adapter.py',
                                  'tools/benchmark_ms_deform_attn.py'])
def test_benchmarks_refuse_a_results_dir_that_is_not_a_directory(tmp_path, tool):
    taken = tmp_path / 'file'
    taken.write_text('')
    done = subprocess.run([sys.executable, tool, '--results-dir', str(taken / 'sub')], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert (f"argument --results-dir: '{taken / 'sub'}': '{taken}' exists and is not a "
            'directory') in done.stderr, done.stderr[-2000:]
    assert taken.read_text() == ''


def test_results_dir_check_names_the_bad_path(tmp_path):
    sys.path.insert(0, os.path.join(REPO, 'tools'))
    try:
        from timing import results_dir
    finally:
        sys.path.pop(0)
    (tmp_path / 'file').write_text('')
    for bad, message in [(str(tmp_path / 'file'), f"'{tmp_path / 'file'}' exists and is not a "
                                                 'directory'),
                         ('', "'' is not a directory path")]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            results_dir(bad)
    assert results_dir(str(tmp_path / 'a' / 'b')) == str(tmp_path / 'a' / 'b')
    assert not (tmp_path / 'a').exists()  # made only when a table is written


@pytest.mark.parametrize('option,message', [
    (['--size', '48'], '--size must be a positive multiple of 32 (levels at 1/8, 1/16, 1/32), '
                       'got 48'),
    (['--batch', '0'], '--batch must be at least 1, got 0'),
    (['--warmup', '-1'], '--warmup must be 0 or more, got -1')])
def test_op_benchmark_names_a_bad_option(option, message):
    done = subprocess.run([sys.executable, 'tools/benchmark_ms_deform_attn.py', *option],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
