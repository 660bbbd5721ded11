"""tools/compare_pe.py through the real runner (tiny ViTBaseline on the
position demo data), and its statistics against hand-computed values."""
import copy
import csv
import glob
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import matplotlib.image
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner

from mmvitpe.apis import pe_study
from mmvitpe.apis.seed_stats import ONE_SEED, WITHIN_NOISE, paired_difference, summarize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs/demo/fcn_vit-baseline-p8_position_demo.py')
SCHEMES = ['NoPE', 'LearnedPE']


def load_compare_pe():
    spec = importlib.util.spec_from_file_location(
        'compare_pe', os.path.join(REPO, 'tools/compare_pe.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def position_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('position')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(root),
                    '--train', '0', '--val', '0', '--position-train', '8',
                    '--position-val', '4'], cwd=REPO, check=True)
    return str(root)


def tiny_options(data, iters=16):
    root = f'{data}/position/'
    return ['model.backbone.embed_dim=32', 'model.backbone.num_heads=2',
            'model.decode_head.in_channels=32', 'model.decode_head.channels=32',
            f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', 'train_dataloader.batch_size=4',
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            'param_scheduler.0.end=2', 'param_scheduler.1.begin=2',
            f'param_scheduler.1.end={iters}',
            'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=2',
            'default_hooks.logger.interval=1']


def study_cmd(work_dir, data, *extra):
    return [sys.executable, os.path.join(REPO, 'tools/compare_pe.py'), CONFIG,
            '--schemes', *SCHEMES, '--seeds', '0', '1', '--test-sizes', '96',
            '--work-dir', str(work_dir), '--cfg-options', *tiny_options(data), *extra]


def manifest(work_dir):
    with open(os.path.join(work_dir, 'study.json')) as f:
        return json.load(f)


def runs_by_name(work_dir):
    return {f"{r['scheme']}_seed{r['seed']}": r for r in manifest(work_dir)['runs'].values()}


def log_dirs(run_dir):
    return sorted(d for d in glob.glob(os.path.join(run_dir, '2*')) if os.path.isdir(d))


@pytest.fixture(scope='module')
def killed_and_resumed(position_data, tmp_path_factory):
    """A 2-scheme x 2-seed study killed while its second run trains, then re-run."""
    work_dir = str(tmp_path_factory.mktemp('study'))
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(study_cmd(work_dir, position_data), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    deadline = time.time() + 900  # generous: the CI machine may be shared
    try:
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists(os.path.join(work_dir, 'study.json')):
                runs = [r for r in manifest(work_dir)['runs'].values()
                        if (r['scheme'], r['seed']) == ('LearnedPE', 0)]
                if runs and runs[0]['status'] == 'training' and pe_study.read_last_checkpoint(
                        os.path.join(work_dir, runs[0]['dir'])):
                    second = runs[0]
                    break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert second is not None, 'the study never reached a checkpoint of its second run'
    before = runs_by_name(work_dir)
    first_dir = os.path.join(work_dir, before['NoPE_seed0']['dir'])
    first_state = (log_dirs(first_dir), os.path.getmtime(before['NoPE_seed0']['checkpoint']),
                   before['NoPE_seed0']['results'])
    out = subprocess.run(study_cmd(work_dir, position_data), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return dict(work_dir=work_dir, before=before, first_state=first_state, stdout=out.stdout)


def test_a_killed_study_continues_without_retraining_finished_runs(killed_and_resumed):
    work_dir = killed_and_resumed['work_dir']
    before, after = killed_and_resumed['before'], runs_by_name(work_dir)
    assert before['NoPE_seed0']['status'] == 'trained'
    assert before['LearnedPE_seed0']['status'] == 'training'
    # the finished run: same single training log, same checkpoint file, same results
    first = after['NoPE_seed0']
    logs, mtime, results = killed_and_resumed['first_state']
    assert log_dirs(os.path.join(work_dir, first['dir'])) == logs and len(logs) == 1
    assert os.path.getmtime(first['checkpoint']) == mtime
    assert first['results'] == results
    assert first['resumed_from'] == []
    # the interrupted run: resumed from its checkpoint, its second log starts past iter 1
    second = after['LearnedPE_seed0']
    assert len(second['resumed_from']) == 1 and second['status'] == 'trained'
    second_logs = log_dirs(os.path.join(work_dir, second['dir']))
    assert len(second_logs) == 2
    with open(os.path.join(second_logs[-1], 'vis_data', 'scalars.json')) as f:
        iters = [json.loads(line)['iter'] for line in f if '"loss"' in line]
    assert iters[0] > 2 and iters[-1] == 16, iters
    assert 'run 2/4 LearnedPE seed 0: resuming from iter_' in killed_and_resumed['stdout']


def test_study_writes_manifest_tables_and_plots(killed_and_resumed):
    work_dir = killed_and_resumed['work_dir']
    runs = runs_by_name(work_dir)
    assert sorted(runs) == ['LearnedPE_seed0', 'LearnedPE_seed1', 'NoPE_seed0', 'NoPE_seed1']
    for run in runs.values():
        assert run['status'] == 'trained' and sorted(run['results']) == ['64', '96']
        assert 0 <= run['results']['96']['mIoU'] <= 100
    with open(os.path.join(work_dir, 'summary.csv')) as f:
        rows = list(csv.DictReader(f))
    assert [(r['test_size'], r['scheme'], r['n']) for r in rows] == [
        ('64', 'NoPE', '2'), ('64', 'LearnedPE', '2'), ('96', 'NoPE', '2'),
        ('96', 'LearnedPE', '2')]
    for row in rows:  # the table's numbers are the runs' numbers
        values = [runs[f"{row['scheme']}_seed{s}"]['results'][row['test_size']]['mIoU']
                  for s in (0, 1)]
        assert float(row['mean']) == pytest.approx(sum(values) / 2)
    learned = [r for r in rows if r['scheme'] == 'LearnedPE']
    assert all(r['verdict'] and r['diff_low'] for r in learned)
    with open(os.path.join(work_dir, 'results_runs.csv')) as f:
        assert len([r for r in csv.DictReader(f) if r['metric'] == 'mIoU']) == 8
    text = open(os.path.join(work_dir, 'summary.md')).read()
    assert '| 64 (train) | 96 |' in text and '95 % t interval' in text
    for name in ('mIoU_by_scheme.png', 'mIoU_vs_test_size.png'):
        image = matplotlib.image.imread(os.path.join(work_dir, 'plots', name))
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_a_changed_config_is_refused_naming_the_key(killed_and_resumed, position_data, capsys):
    compare_pe = load_compare_pe()
    args = study_cmd(killed_and_resumed['work_dir'], position_data,
                     'optim_wrapper.optimizer.lr=0.002')[2:]
    with pytest.raises(SystemExit, match=r'differs in: optim_wrapper\.optimizer\.lr\. '):
        compare_pe.main(args + ['--dry-run'])
    # asked to, it plans the new config's runs beside the old ones, retraining none of them
    compare_pe.main(args + ['--dry-run', '--allow-config-change'])
    out = capsys.readouterr().out
    assert 'dry run: 4 trainings and 8 evaluations' in out
    assert 'model.backbone.pos_embed.type=LearnedPE randomness.seed=1' in out


def test_collect_evaluates_work_dirs_made_by_hand(killed_and_resumed, tmp_path, capsys):
    runs = runs_by_name(killed_and_resumed['work_dir'])
    dirs = [os.path.join(killed_and_resumed['work_dir'], runs[name]['dir'])
            for name in ('NoPE_seed1', 'LearnedPE_seed1')]
    load_compare_pe().main(['--collect', *dirs, '--work-dir', str(tmp_path)])
    collected = {f"{r['scheme']}_seed{r['seed']}": r for r in manifest(tmp_path)['runs'].values()}
    assert sorted(collected) == ['LearnedPE_seed1', 'NoPE_seed1']  # read from the dumped configs
    for name, run in collected.items():  # the same checkpoints give the same numbers
        assert run['results']['64']['mIoU'] == pytest.approx(runs[name]['results']['64']['mIoU'])
    assert '| LearnedPE | ' in capsys.readouterr().out


def test_bad_scheme_names_are_clear_errors(capsys):
    compare_pe = load_compare_pe()
    with pytest.raises(SystemExit):
        compare_pe.main([CONFIG, '--schemes', 'NoPE', 'LearnedPe', '--seeds', '0', '--dry-run'])
    err = capsys.readouterr().err
    assert "unknown positional encoding 'LearnedPe'" in err and "'LearnedPE'" in err
    with pytest.raises(SystemExit):
        compare_pe.main([CONFIG, '--schemes', 'NoPE', '--baseline', 'MPVG', '--seeds', '0'])
    assert "--baseline 'MPVG' is not one of --schemes ['NoPE']" in capsys.readouterr().err


def test_collect_refuses_a_baseline_it_did_not_collect_before_evaluating(killed_and_resumed,
                                                                          tmp_path):
    runs = runs_by_name(killed_and_resumed['work_dir'])
    dirs = [os.path.join(killed_and_resumed['work_dir'], runs[name]['dir'])
            for name in ('NoPE_seed1', 'LearnedPE_seed1')]
    with pytest.raises(SystemExit, match=r"--baseline 'MPVG': no collected dir trained it; "
                                         r"collected: \['LearnedPE', 'NoPE'\]"):
        load_compare_pe().main(['--collect', *dirs, '--work-dir', str(tmp_path), '--baseline',
                                'MPVG'])
    assert not glob.glob(str(tmp_path / 'collected' / '*' / 'eval_*'))


def test_a_second_study_on_the_same_dir_stops_naming_the_first(tmp_path):
    with pe_study.study_lock(str(tmp_path)):
        with pytest.raises(SystemExit, match=rf'compare_pe: {tmp_path}: another compare_pe is '
                                             rf'working on this study \(pid {os.getpid()} since '):
            load_compare_pe().main([CONFIG, '--schemes', 'NoPE', '--seeds', '0', '--work-dir',
                                    str(tmp_path)])
    assert not (tmp_path / 'study.json').exists()


RUN = dict(scheme='NoPE', seed=0, config_hash='abc', dir='runs/abc/NoPE_seed0',
           status='trained', train_seconds=1.0, resumed_from=[], results={}, eval_seconds={})


@pytest.mark.parametrize('content,message', [
    ('{"config_hash": "abc", "ru', r'not a readable study manifest \(Unterminated string'),
    ('', r'not a readable study manifest \(Expecting value'),
    ('[]', r'expected an object with "config_hash" \(a string\) and "runs" \(an object\)'),
    (dict(config_hash='abc', runs={'a': 3}), r"run 'a' is a int, not an object"),
    (dict(config_hash='abc', runs={'a': dict(RUN, seed='0')}),
     r"run 'a': \"seed\" is '0'; expected an integer"),
    (dict(config_hash='abc', runs={'a': dict(RUN, status='done')}),
     r"run 'a': status 'done'; valid: \['pending', 'training', 'trained'\]"),
    (dict(config_hash='abc', runs={'a': dict(RUN, dir='../x')}),
     r"run 'a': \"dir\" '../x' is outside the study dir"),
    (dict(config_hash='abc', runs={'a': dict(RUN, checkpoint='/etc/x.pth')}),
     r"run 'a': \"checkpoint\" '/etc/x.pth' is outside the study dir"),
], ids=['truncated', 'empty', 'a list', 'a run not an object', 'seed a string',
        'unknown status', 'dir outside', 'checkpoint outside'])
def test_an_edited_or_damaged_manifest_is_refused_naming_the_file(tmp_path, content, message):
    manifest_path = tmp_path / 'study.json'
    manifest_path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SystemExit, match=rf'compare_pe: {manifest_path}: {message}'):
        load_compare_pe().main([CONFIG, '--schemes', 'NoPE', '--seeds', '0', '--work-dir',
                                str(tmp_path), '--dry-run'])


@pytest.mark.parametrize('options,message', [
    (['--seeds', '-1'], r'--seeds: -1 is outside the seed range 0..4294967295'),
    (['--seeds', str(2 ** 32)], r'--seeds: 4294967296 is outside the seed range'),
    (['--seeds', '0', '--cfg-options', 'train_cfg.max_iterss=2'],
     r'train_cfg has no key .max_iterss.; did you mean train_cfg.max_iters\?'),
])
def test_bad_seeds_and_misspelt_options_fail_in_the_dry_run(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as error:
        load_compare_pe().main([CONFIG, '--schemes', 'NoPE', '--work-dir', str(tmp_path),
                                '--dry-run', *options])
    assert re.search(message, str(error.value.code) + capsys.readouterr().err)


def test_another_test_size_changes_what_the_model_sees(position_data):
    init_default_scope('mmseg')
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(load_compare_pe().parse_cfg_options(tiny_options(position_data)))
    assert pe_study.train_size_label(cfg) == '64'
    option = pe_study.resize_option(cfg, 96)
    assert option == 'test_dataloader.dataset.pipeline.1.scale=(96,96)'
    resized = copy.deepcopy(cfg)
    resized.merge_from_dict(load_compare_pe().parse_cfg_options([option]))
    model = MODELS.build(cfg.model).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, x: seen.append(tuple(x[0].shape[-2:])))
    for c in (cfg, resized):
        loader = Runner.build_dataloader(c.test_dataloader)
        with torch.no_grad():
            preds = model.test_step(next(iter(loader)))
        # the metric still compares at the label map's size
        assert tuple(preds[0].pred_sem_seg.data.shape[-2:]) == (64, 64)
    assert seen == [(64, 64), (96, 96)]


def test_statistics_match_hand_computed_values():
    s = summarize([40.0, 41.0, 42.0])
    assert (s.n, s.mean, s.std) == (3, 41.0, 1.0)
    one = summarize([40.0])
    assert one.n == 1 and one.mean == 40.0 and math.isnan(one.std)
    # d = (1.0, 0.5, 1.5): mean 1.0, sd 0.5, se 0.5/sqrt(3); t(0.975, 2) = 4.302653
    d = paired_difference({0: 41.0, 1: 41.5, 2: 43.5}, {0: 40.0, 1: 41.0, 2: 42.0})
    half = 4.302652729749464 * 0.5 / math.sqrt(3)
    assert (d.n, d.mean, d.std) == (3, 1.0, pytest.approx(0.5))
    assert (d.low, d.high) == (pytest.approx(1 - half), pytest.approx(1 + half))
    assert d.verdict == WITHIN_NOISE
    # d = (2.0, 2.2): mean 2.1, se 0.1; t(0.975, 1) = 12.706205: [0.829, 3.371], above
    d = paired_difference({0: 12.0, 1: 12.2, 7: 1.0}, {0: 10.0, 1: 10.0})
    assert d.n == 2 and d.mean == pytest.approx(2.1)
    assert (d.low, d.high) == (pytest.approx(2.1 - 1.2706205), pytest.approx(2.1 + 1.2706205))
    assert d.verdict == 'above baseline'
    d = paired_difference({0: 8.0, 1: 7.9}, {0: 10.0, 1: 10.0})
    assert d.verdict == 'below baseline'
    # one seed: the difference, but no interval and no claim
    d = paired_difference({3: 42.0}, {3: 40.0})
    assert d.n == 1 and d.mean == 2.0 and math.isnan(d.low) and math.isnan(d.high)
    assert d.verdict == ONE_SEED
    with pytest.raises(ValueError, match=r'no seed in common: scheme has \[1\], baseline has'):
        paired_difference({1: 1.0}, {0: 1.0})


def test_one_seed_report_says_there_is_no_interval(tmp_path):
    runs = [dict(scheme=s, seed=0, dir=f'runs/{s}', results={'64': {'mIoU': v}})
            for s, v in (('LearnedPE', 50.0), ('NoPE', 40.0))]
    rows = pe_study.aggregate(runs, ['mIoU'], ['64'], 'LearnedPE', ['LearnedPE', 'NoPE'])
    assert rows[1]['diff_mean'] == -10.0 and rows[1]['verdict'] == ONE_SEED
    paths = pe_study.write_reports(str(tmp_path), runs, rows, ['mIoU'], ['64'], '64',
                                   'LearnedPE', ['LearnedPE', 'NoPE'])
    assert '| NoPE | 40.00 ± – (1) |' in paths['markdown_text']
    assert f'| NoPE | -10.00 [–, –] (1) {ONE_SEED} |' in paths['markdown_text']


PROTOCOL_CONFIG = os.path.join(REPO, 'configs/demo/fcn_sta-p8_position_demo.py')


def test_several_configs_are_a_protocol_axis_in_one_study(tmp_path, capsys):
    """Two configs (ViTBaseline and STA): each (protocol, scheme, seed) is one run in
    its own dir, seed-major, named by its backbone type."""
    load_compare_pe().main([CONFIG, PROTOCOL_CONFIG, '--schemes', *SCHEMES, '--seeds', '0', '1',
                            '--work-dir', str(tmp_path), '--dry-run'])
    out = capsys.readouterr().out
    assert '8 trainings and 8 evaluations' in out
    planned = re.findall(r'run (\d)/8 (\S+ · \S+) seed (\d)', out)[::2]  # train, then eval
    assert [(p, int(s)) for _, p, s in planned] == [
        (f'{protocol} · {scheme}', seed) for seed in (0, 1)
        for protocol in ('ViTBaseline', 'STA') for scheme in SCHEMES]
    assert re.search(r'runs/\w+/STA/LearnedPE_seed1 ', out)
    with pytest.raises(SystemExit):
        load_compare_pe().main([CONFIG, CONFIG, '--schemes', 'NoPE', '--seeds', '0',
                                '--work-dir', str(tmp_path), '--dry-run'])
    assert 'CONFIG: repeated values' in capsys.readouterr().err


def test_a_study_of_protocols_compares_schemes_within_each_protocol(tmp_path):
    """The paired difference is to the baseline on the same protocol, never across."""
    runs = [dict(scheme=s, seed=seed, protocol=p, dir=f'runs/{p}/{s}{seed}',
                 results={'64': {'mIoU': base + gain + seed}})
            for p, base in (('ViTBaseline', 40.0), ('STA', 60.0))
            for s, gain in (('LearnedPE', 0.0), ('NoPE', -5.0)) for seed in (0, 1)]
    rows = pe_study.aggregate(runs, ['mIoU'], ['64'], 'LearnedPE', ['LearnedPE', 'NoPE'],
                              ['ViTBaseline', 'STA'])
    assert [(r['label'], r['mean'], r.get('diff_mean')) for r in rows] == [
        ('ViTBaseline · LearnedPE', 40.5, None), ('ViTBaseline · NoPE', 35.5, -5.0),
        ('STA · LearnedPE', 60.5, None), ('STA · NoPE', 55.5, -5.0)]
    paths = pe_study.write_reports(str(tmp_path), runs, rows, ['mIoU'], ['64'], '64',
                                   'LearnedPE', ['LearnedPE', 'NoPE'],
                                   protocols=['ViTBaseline', 'STA'])
    assert '| STA · NoPE | 55.50 ± 0.71 (2) |' in paths['markdown_text']
    assert '| STA · NoPE | -5.00 [' in paths['markdown_text']
    with open(paths['summary_csv']) as f:
        assert next(csv.reader(f))[:4] == ['metric', 'test_size', 'protocol', 'scheme']


def test_protocols_that_cannot_be_told_apart_or_test_at_other_sizes_are_refused(tmp_path):
    """Two paths of one file would share their runs; configs testing at different
    sizes would be reported at one."""
    other_size = tmp_path / 'other_size.py'
    other_size.write_text(f"_base_ = '{PROTOCOL_CONFIG}'\n"
                          "test_pipeline = [dict(type='LoadImageFromFile'), "
                          "dict(type='Resize', scale=(96, 96), keep_ratio=True), "
                          "dict(type='LoadAnnotations', reduce_zero_label=True), "
                          "dict(type='PackSegInputs')]\n"
                          "val_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n"
                          "test_dataloader = val_dataloader\n")
    with pytest.raises(SystemExit, match=r"the configs test at different sizes .*: '64'.*: '96'"):
        load_compare_pe().main([CONFIG, str(other_size), '--schemes', 'NoPE', '--seeds', '0',
                                '--work-dir', str(tmp_path / 'study'), '--dry-run'])
