"""Compare positional-encoding schemes over seeds, test sizes and adapter protocols.

    python tools/compare_pe.py CONFIG [CONFIG ...] --schemes NoPE LearnedPE MPVG RoPEMixed \\
        --seeds 0 1 2 [--baseline LearnedPE] [--test-sizes 512 768 1024] [--metrics mIoU]
        [--launcher none|pytorch|slurm] [--gpus N] [--partition P] [--work-dir DIR]
        [--cfg-options k=v ...] [--allow-config-change] [--dry-run]
    python tools/compare_pe.py --collect DIR [DIR ...] --work-dir OUT [--test-sizes ...]

Several CONFIGs (one per adapter protocol, e.g. a ViTAdapter and a ViTDet config
of one task) make a study of schemes x protocols x seeds: each config is a
protocol, named by its backbone type (or its file name where two share one), every
scheme and seed runs on each, and the report compares the schemes within each
protocol and shows both factors.

Each (protocol, scheme, seed) is one run of tools/train.py with
``--cfg-options model.backbone.pos_embed.type=<scheme> randomness.seed=<seed>``
(plus your --cfg-options): with ``--launcher none`` in this process one after
another, with ``pytorch`` as tools/dist_train.sh (torchrun, --gpus processes),
with ``slurm`` as tools/slurm_train.sh jobs (srun, blocking, one at a time).
Runs with the same seed see the same data in the same order (mmengine seeds the
sampler and the augmentations from randomness.seed), whatever the scheme.

Each trained run is then evaluated by tools/test.py at the training size (the
config's test pipeline as it is) and at every --test-sizes value (the test
Resize scaled to that short edge), with the config's own evaluator.

The study lives in its work dir (default work_dirs/compare_pe/<config name>):
study.json records the runs, their config hash, status and results. Running
the same command again continues: finished runs and evaluations are never
redone or overwritten, an interrupted run resumes from its last checkpoint
(tools/train.py --resume), and new seeds, schemes or test sizes are added.
A changed config (or --cfg-options, launcher, --gpus) is refused, naming the
changed keys; --allow-config-change trains it in runs/<new hash>/ beside the
old runs, which stay on disk and in the manifest but leave the report.
One compare_pe works on a study dir at a time: a second one stops at once,
naming the process that holds it. study.json is checked when read (its shape,
and every run's dir and checkpoint inside the study dir); an error names it.

--collect evaluates and aggregates work dirs trained by hand with
tools/train.py: scheme and seed are read from each dir's dumped config, and
the configs must not differ otherwise (unless --allow-config-change).

Report (the study dir): results_runs.csv (every run, size and metric),
summary.csv and summary.md (mean ± sample std and n per scheme and size; the
paired per-seed difference to the baseline with a 95 % Student t interval and
"within seed noise" when it covers 0), plots/<metric>_by_scheme.png (error
bars) and plots/<metric>_vs_test_size.png.
"""
import argparse
import contextlib
import glob
import os
import os.path as osp
import runpy
import shlex
import subprocess
import sys
import time

from mmengine.config import Config

import mmvitpe  # noqa: F401  (registers the schemes)
from mmvitpe.apis import task_of
from mmvitpe.apis.launch import CfgOptionsAction, check_cfg_options
from mmvitpe.apis import pe_study as study
from mmvitpe.registry import POS_ENCODINGS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCHEME_KEY = 'model.backbone.pos_embed.type'
SEED_KEY = 'randomness.seed'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='*', metavar='CONFIG',
                        help='the config to train once per scheme and seed; several: one per '
                        'protocol')
    parser.add_argument('--schemes', nargs='+', help='PE type names (pos_embed.type)')
    parser.add_argument('--seeds', nargs='+', type=int, help='randomness.seed values')
    parser.add_argument('--baseline', help='scheme the others are compared with '
                        '(default: the first of --schemes)')
    parser.add_argument('--test-sizes', nargs='+', type=int, default=[],
                        help='extra test sizes (short edge of the test Resize) to evaluate at')
    parser.add_argument('--metrics', nargs='+', help='metrics to report (default: mIoU for '
                        'mmseg, coco/bbox_mAP and coco/segm_mAP for mmdet)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--gpus', type=int, default=1,
                        help='processes per run (pytorch: torchrun --nproc_per_node; slurm: GPUS)')
    parser.add_argument('--partition', help='slurm partition (--launcher slurm)')
    parser.add_argument('--work-dir', help='the study dir')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='config overrides for every run, as tools/train.py takes them')
    parser.add_argument('--allow-config-change', action='store_true',
                        help='continue a study whose config changed (new runs beside the old)')
    parser.add_argument('--collect', nargs='+', metavar='DIR',
                        help='aggregate finished tools/train.py work dirs instead of training')
    parser.add_argument('--dry-run', action='store_true', help='print what would run, run nothing')
    args = parser.parse_args(argv)

    if args.collect:
        if args.configs or args.seeds:
            parser.error('--collect takes work dirs, not CONFIG or --seeds')
        if not args.work_dir:
            parser.error('--collect needs --work-dir for the report')
    elif not (args.configs and args.schemes and args.seeds):
        parser.error('CONFIG, --schemes and --seeds are required (or --collect DIR...)')
    valid = sorted(POS_ENCODINGS.module_dict)
    for name in args.schemes or []:
        if name not in valid:
            parser.error(f'--schemes: unknown positional encoding {name!r}; valid: {valid}')
    args.configs = [osp.abspath(c) for c in args.configs]  # one spelling of each file
    for flag, values in (('--schemes', args.schemes), ('--seeds', args.seeds),
                         ('--test-sizes', args.test_sizes), ('CONFIG', args.configs)):
        if values and len(set(values)) != len(values):
            parser.error(f'{flag}: repeated values in {values}')
    for seed in args.seeds or []:
        if not 0 <= seed < 2 ** 32:  # numpy's (mmengine seeds numpy, torch and random)
            parser.error(f'--seeds: {seed} is outside the seed range 0..{2 ** 32 - 1}')
    if any(s <= 0 for s in args.test_sizes):
        parser.error(f'--test-sizes: sizes must be positive, got {args.test_sizes}')
    if args.baseline and args.schemes and args.baseline not in args.schemes:
        parser.error(f'--baseline {args.baseline!r} is not one of --schemes {args.schemes}')
    if args.gpus < 1 or (args.launcher == 'none' and args.gpus != 1):
        parser.error(f'--gpus {args.gpus}: --launcher none trains in one process; use '
                     '--launcher pytorch or slurm for more')
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    for key in parse_cfg_options(args.cfg_options):  # KEY=VALUE checked as train.py does
        if key in (SCHEME_KEY, SEED_KEY):
            parser.error(f'--cfg-options {key}: set by --schemes/--seeds for each run')
    return args


def parse_cfg_options(options: list) -> dict:
    """The --cfg-options strings as tools/train.py will parse them (the same action)."""
    parser = argparse.ArgumentParser(prog='compare_pe.py')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={})
    return parser.parse_args(['--cfg-options', *options]).cfg_options if options else {}


class Launcher:
    """Builds and runs the tools/train.py and tools/test.py command lines."""

    def __init__(self, args):
        self.kind, self.gpus, self.partition = args.launcher, args.gpus, args.partition

    def train(self, config, work_dir, options, resume=None) -> list:
        extra = (['--resume', resume] if resume else []) + ['--cfg-options', *options]
        if self.kind == 'pytorch':
            return ['bash', osp.join(REPO, 'tools/dist_train.sh'), config, str(self.gpus),
                    '--work-dir', work_dir, *extra]
        if self.kind == 'slurm':
            return ['bash', osp.join(REPO, 'tools/slurm_train.sh'), self.partition,
                    osp.basename(work_dir), config, work_dir, *extra]
        return [sys.executable, osp.join(REPO, 'tools/train.py'), config, '--work-dir',
                work_dir, *extra]

    def test(self, config, checkpoint, work_dir, options) -> list:
        args = [checkpoint, '--work-dir', work_dir, '--cfg-options', *options]
        if self.kind == 'pytorch':
            return ['bash', osp.join(REPO, 'tools/dist_test.sh'), config, args[0],
                    str(self.gpus), *args[1:]]
        test = [sys.executable, osp.join(REPO, 'tools/test.py'), config, *args]
        if self.kind == 'slurm':  # one GPU is enough to evaluate
            return ['srun', '-p', self.partition, f'--job-name={osp.basename(work_dir)}',
                    '--gres=gpu:1', '--ntasks=1', '--kill-on-bad-exit=1',
                    *shlex.split(os.environ.get('SRUN_ARGS', '')), *test]
        return test

    def run(self, cmd: list) -> None:
        if self.kind == 'none':  # the tool itself, in this process
            argv = sys.argv
            sys.argv = [cmd[1], *cmd[2:]]
            try:
                runpy.run_path(cmd[1], run_name='__main__')
            except SystemExit as e:
                if e.code not in (0, None):
                    raise RuntimeError(f'{shlex.join(cmd)} exited with {e.code}') from e
            finally:
                sys.argv = argv
            return
        env = dict(os.environ, GPUS=str(self.gpus)) if self.kind == 'slurm' else None
        subprocess.run(cmd, check=True, env=env)


def base_config(args, path):
    cfg = Config.fromfile(path)
    if args.cfg_options:
        options = parse_cfg_options(args.cfg_options)
        check_cfg_options(cfg, options)  # as tools/train.py will, before any run starts
        cfg.merge_from_dict(options)
    return cfg


def run_options(args, scheme, seed) -> list:
    """Overrides for one run: the user's, then the scheme and the seed."""
    options = list(args.cfg_options)
    if scheme is not None:
        options += [f'{SCHEME_KEY}={scheme}', f'{SEED_KEY}={seed}']
    return options


def naming_options(cfg, name) -> list:
    """Unique logger and visualizer names: runs in one process must not share them."""
    return [f'experiment_name={name}'] + ([f'visualizer.name={name}'] if 'visualizer' in cfg
                                          else [])


def refuse_or_record_change(args, study_dir, manifest, digest, material) -> None:
    old = manifest['config_hash']
    if old == digest:
        return
    before = study.load_material(study_dir, old)
    keys = study.changed_keys(before, material) if before is not None else ['(unknown)']
    shown = ', '.join(keys[:12]) + (f' and {len(keys) - 12} more' if len(keys) > 12 else '')
    if not args.allow_config_change:
        raise SystemExit(
            f'compare_pe: the study in {study_dir} was made with config hash {old}; the config '
            f'(with --cfg-options, --launcher, --gpus) now has hash {digest} and differs in: '
            f'{shown}. Finished runs stay untouched either way. Pass --allow-config-change to '
            f'train this config in runs/{digest}/ beside them, or use another --work-dir.')
    manifest.setdefault('history', []).append(
        dict(time=study.now(), event='config changed', old_hash=old, new_hash=digest,
             changed=keys))
    manifest['config_hash'] = digest
    manifest['cfg_options'] = args.cfg_options
    print(f'[compare_pe] config changed ({shown}): new runs go to runs/{digest}/', flush=True)


def protocol_labels(configs) -> dict:
    """{config path: protocol label}: the backbone type, or the file name where two
    configs share one; '' for a study of one config."""
    if len(configs) == 1:
        return {path: '' for path in configs}
    types = {path: cfg.model.backbone.type.split('.')[-1] for path, cfg in configs.items()}
    labels = {path: (kind if list(types.values()).count(kind) == 1
                     else osp.splitext(osp.basename(path))[0])
              for path, kind in types.items()}
    if len(set(labels.values())) != len(labels):
        raise SystemExit(f'compare_pe: the configs {sorted(configs)} share a backbone type and '
                         'a file name, so their runs could not be told apart; rename one')
    return labels


def prepare_study(args, study_dir: str):
    """Load or create the manifest; returns (study_dir, manifest, runs, cfg), cfg the
    first config's."""
    configs = {path: base_config(args, path) for path in args.configs}
    tasks = {path: task_of(cfg) for path, cfg in configs.items()}
    if len(set(tasks.values())) > 1:
        raise SystemExit(f'compare_pe: the configs are of different tasks ({tasks}); '
                         'protocols are compared on one task')
    sizes = {path: study.train_size_label(cfg) for path, cfg in configs.items()}
    if len(set(sizes.values())) > 1:
        raise SystemExit(f'compare_pe: the configs test at different sizes ({sizes}); the '
                         'report compares protocols at one training size: give them one test '
                         'Resize (--cfg-options) or study them apart')
    labels = protocol_labels(configs)
    materials = {}
    for path, cfg in configs.items():
        study.scheme_of(cfg)
        if args.test_sizes:
            study.test_resize(cfg)
        materials[labels[path]] = study.config_material(cfg)
    # one config: its material as it is (the studies made before protocols continue)
    material = dict(materials['']) if '' in materials else materials
    material['_launch'] = dict(launcher=args.launcher, gpus=args.gpus)
    digest = study.material_hash(material)
    cfg = next(iter(configs.values()))
    manifest = study.load_manifest(study_dir)
    if manifest is None:
        manifest = dict(config=args.configs[0] if len(args.configs) == 1 else args.configs,
                        config_hash=digest,
                        cfg_options=args.cfg_options, task=cfg.default_scope,
                        created=study.now(), runs={})
    else:
        refuse_or_record_change(args, study_dir, manifest, digest, material)
    if not args.dry_run:
        study.save_material(study_dir, material)
    runs = []
    for seed in args.seeds:  # seed-major: complete pairs come first
        for path in args.configs:
            protocol = labels[path]
            for scheme in args.schemes:
                rid = study.run_id(digest, scheme, seed, protocol)
                manifest['runs'].setdefault(rid, study.new_run(digest, scheme, seed, protocol))
                run = manifest['runs'][rid]
                run['name'] = '_'.join(filter(None, [protocol, scheme, f'seed{seed}',
                                                     digest[:6]]))
                run['config'] = path
                run['options'] = run_options(args, scheme, seed)
                runs.append(run)
    return study_dir, manifest, runs, cfg


def prepare_collect(args, study_dir: str):
    """Register hand-made work dirs as runs; returns (study_dir, manifest, runs, cfg)."""
    manifest = study.load_manifest(study_dir) or dict(
        config=None, config_hash='collected', task=None, created=study.now(), runs={})
    found, reference, cfg = [], None, None
    for work_dir in args.collect:
        dumps = sorted(glob.glob(osp.join(work_dir, '*.py')))
        if len(dumps) != 1:
            raise SystemExit(f'--collect {work_dir}: expected the one config tools/train.py '
                             f'dumps there, found {dumps or "none"}')
        checkpoint = study.read_last_checkpoint(work_dir)
        if checkpoint is None:
            raise SystemExit(f'--collect {work_dir}: no last_checkpoint: is training finished?')
        run_cfg = Config.fromfile(dumps[0])
        scheme, seed = study.scheme_of(run_cfg), run_cfg.get('randomness', {}).get('seed')
        if seed is None:
            raise SystemExit(f'--collect {work_dir}: the config sets no randomness.seed, so '
                             'runs cannot be paired by seed')
        material = study.config_material(run_cfg)
        material['model']['backbone'].pop('pos_embed')
        material['randomness'].pop('seed')
        if reference is None:
            reference, cfg = (work_dir, material), run_cfg
        elif material != reference[1]:
            keys = study.changed_keys(reference[1], material)
            if not args.allow_config_change:
                raise SystemExit(f'--collect: {work_dir} and {reference[0]} differ in more than '
                                 f'the scheme and seed: {keys}; pass --allow-config-change to '
                                 'compare them anyway')
            print(f'[compare_pe] note: {work_dir} differs from {reference[0]} in {keys}')
        found.append((scheme, seed, work_dir, dumps[0], checkpoint))
    task_of(cfg)
    if args.test_sizes:
        study.test_resize(cfg)
    pairs = [(s, seed) for s, seed, *_ in found]
    if len(set(pairs)) != len(pairs):
        raise SystemExit(f'--collect: (scheme, seed) repeated among the dirs: {pairs}')
    if args.schemes is None:
        args.schemes = list(dict.fromkeys(s for s, *_ in found))
    if args.baseline and args.baseline not in {s for s, *_ in found}:
        raise SystemExit(f'--baseline {args.baseline!r}: no collected dir trained it; '
                         f'collected: {sorted({s for s, *_ in found})}')
    runs = []
    for scheme, seed, work_dir, dump, checkpoint in found:
        if scheme not in args.schemes:
            continue
        rid = f'collected/{scheme}_seed{seed}'
        run = manifest['runs'].setdefault(rid, dict(
            scheme=scheme, seed=seed, config_hash='collected', dir=osp.abspath(work_dir),
            status='trained', train_seconds=0.0, resumed_from=[], results={}, eval_seconds={}))
        run.update(dir=osp.abspath(work_dir), name=f'collected_{scheme}_seed{seed}',
                   config=dump, checkpoint=checkpoint,
                   eval_root=osp.join(study_dir, 'collected', f'{scheme}_seed{seed}'))
        run['options'] = run_options(args, None, None)
        runs.append(run)
    manifest['task'] = cfg.default_scope
    return study_dir, manifest, runs, cfg


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else 0.0


class Progress:
    """Run k of n, elapsed time and an estimate of the rest from the steps done."""

    def __init__(self, runs):
        self.start = time.time()
        self.train = [r['train_seconds'] for r in runs if r['status'] == 'trained'
                      and r['train_seconds'] > 0]
        self.eval = [s for r in runs for s in r['eval_seconds'].values()]

    def line(self, k, n, run, what, trains_left, evals_left) -> str:
        elapsed = time.time() - self.start
        if (trains_left and not self.train) or (evals_left and not self.eval):
            rest = 'remaining: known after the first run'
        else:
            rest = 'remaining ~' + study.format_seconds(
                trains_left * _mean(self.train) + evals_left * _mean(self.eval))
        return (f'[compare_pe] run {k}/{n} {study.run_label(run)} seed {run["seed"]}: {what} | '
                f'elapsed {study.format_seconds(elapsed)} | {rest}')


def execute(args, study_dir, manifest, runs, cfg, sizes, train_label):
    launcher = Launcher(args)
    test_cfgs = {path: base_config(args, path) for path in {r['config'] for r in runs}}
    overrides = {(path, size): study.resize_option(test_cfg, int(size))
                 for path, test_cfg in test_cfgs.items() for size in sizes if size != train_label}

    def run_dir(run):
        return run['dir'] if osp.isabs(run['dir']) else osp.join(study_dir, run['dir'])

    def eval_dir(run, size):
        return osp.join(run.get('eval_root') or run_dir(run), f'eval_{size}')

    def evals_missing(run):
        return [s for s in sizes if s not in run['results']]

    trains_left = sum(r['status'] != 'trained' for r in runs)
    evals_left = sum(len(evals_missing(r)) for r in runs)
    progress = Progress(runs)
    if args.dry_run:
        print(f'[compare_pe] dry run: {trains_left} trainings and {evals_left} evaluations '
              f'to do in {study_dir}')
    for k, run in enumerate(runs, 1):
        wd = run_dir(run)
        if run['status'] != 'trained':
            checkpoint = study.read_last_checkpoint(wd)
            what = f'resuming from {osp.basename(checkpoint)}' if checkpoint else 'training'
            options = run['options'] + naming_options(cfg, run['name'])
            cmd = launcher.train(run['config'], wd, options, resume=checkpoint)
            print(progress.line(k, len(runs), run, what, trains_left, evals_left), flush=True)
            if args.dry_run:
                print('  $', shlex.join(cmd))
            else:
                if checkpoint:
                    run['resumed_from'].append(checkpoint)
                run['status'] = 'training'
                study.save_manifest(study_dir, manifest)
                start = time.time()
                launcher.run(cmd)
                run['train_seconds'] += time.time() - start
                run['checkpoint'] = study.read_last_checkpoint(wd)
                if run['checkpoint'] is None:
                    raise SystemExit(f'compare_pe: {wd} has no checkpoint after training: the '
                                     "config's CheckpointHook must save the last iteration")
                run['status'] = 'trained'
                run['finished'] = study.now()
                progress.train.append(run['train_seconds'])
                study.save_manifest(study_dir, manifest)
            trains_left -= 1
        for size in evals_missing(run):
            checkpoint = run.get('checkpoint') or '<checkpoint of the run above>'
            resize = overrides.get((run['config'], size))
            options = (run['options'] + ([resize] if resize else [])
                       + naming_options(cfg, f"{run['name']}_eval{size}"))
            cmd = launcher.test(run['config'], checkpoint, eval_dir(run, size), options)
            what = f'evaluating at {study.size_name(size, train_label)}'
            print(progress.line(k, len(runs), run, what, trains_left, evals_left), flush=True)
            if args.dry_run:
                print('  $', shlex.join(cmd))
            else:
                start = time.time()
                launcher.run(cmd)
                run['eval_seconds'][size] = time.time() - start
                run['results'][size] = study.read_test_metrics(eval_dir(run, size))
                progress.eval.append(run['eval_seconds'][size])
                study.save_manifest(study_dir, manifest)
            evals_left -= 1
    if not args.dry_run:
        elapsed = study.format_seconds(time.time() - progress.start)
        print(f'[compare_pe] {len(runs)} runs ready ({elapsed} in this invocation)', flush=True)


def report(args, study_dir, manifest, runs, cfg, sizes, train_label) -> None:
    reported = sorted({m for r in runs for v in r['results'].values() for m in v})
    if args.metrics:
        unknown = [m for m in args.metrics if m not in reported]
        if unknown:
            raise SystemExit(f'--metrics {unknown}: not reported by the evaluator; '
                             f'reported: {reported}')
        metrics = args.metrics
    else:
        metrics = [m for m in study.DEFAULT_METRICS[manifest['task']] if m in reported]
        metrics = metrics or reported
    baseline = args.baseline or args.schemes[0]
    protocols = list(dict.fromkeys(r.get('protocol', '') for r in runs))
    rows = study.aggregate(runs, metrics, sizes, baseline, args.schemes, protocols)
    notes = ['differences are paired by seed (same seed = same data order and initial RNG '
             'state for every scheme); the interval is the 95 % Student t interval of their '
             'mean; "within seed noise" when it covers 0; n=1 gives no interval']
    if protocols != ['']:
        notes.append(f'protocols {", ".join(protocols)}: each scheme is compared with '
                     f'{baseline} on the same protocol and seed')
    if manifest['task'] == 'mmseg' and cfg.model.get('test_cfg', {}).get('mode') == 'slide':
        notes.append('slide inference: the model sees crop_size windows of each resized '
                     'image; pass --cfg-options model.test_cfg.mode=whole to feed it whole')
    paths = study.write_reports(study_dir, runs, rows, metrics, sizes, train_label, baseline,
                                args.schemes, notes, protocols)
    manifest['report'] = dict(time=study.now(), metrics=metrics, sizes=sizes, baseline=baseline)
    study.save_manifest(study_dir, manifest)
    print('\n' + paths['markdown_text'])
    print(f"[compare_pe] study: {osp.join(study_dir, study.MANIFEST)}\n"
          f"[compare_pe] tables: {paths['summary_csv']}, {paths['runs_csv']}, "
          f"{paths['markdown']}\n[compare_pe] plots: {', '.join(paths['plots'])}", flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    study_dir = osp.abspath(args.work_dir or osp.join(
        'work_dirs', 'compare_pe', '+'.join(osp.splitext(osp.basename(c))[0]
                                            for c in args.configs)))
    with contextlib.ExitStack() as held:
        try:
            if not args.dry_run:  # a dry run only reads: the manifest is replaced atomically
                held.enter_context(study.study_lock(study_dir))
            prepared = (prepare_collect(args, study_dir) if args.collect
                        else prepare_study(args, study_dir))
        except ValueError as e:  # a config or study dir it cannot use: say why, no traceback
            raise SystemExit(f'compare_pe: {e}') from e
        study_dir, manifest, runs, cfg = prepared
        train_label = study.train_size_label(cfg)
        sizes = [train_label] + [str(s) for s in args.test_sizes if str(s) != train_label]
        if not args.dry_run:
            study.save_manifest(study_dir, manifest)
        execute(args, study_dir, manifest, runs, cfg, sizes, train_label)
        if not args.dry_run:
            report(args, study_dir, manifest, runs, cfg, sizes, train_label)


if __name__ == '__main__':
    main()
