"""The state and the report of a PE comparison study (tools/compare_pe.py).

A study is one config trained once per (scheme, seed), or several configs (one
per adapter protocol) each trained once per (scheme, seed). Everything it knows
lives in its work dir, so that re-running the command continues it and the
results can be re-analysed later without the tool (``load_manifest`` and
``aggregate`` below):

    <study>/study.json                 manifest: settings, config hash, runs, results
    <study>/config_<hash>.json         the config each hash stands for (to name changes)
    <study>/runs/<hash>/[<protocol>/]<scheme>_seed<s>/   tools/train.py work dir of one run
    <study>/runs/<hash>/[<protocol>/]<scheme>_seed<s>/eval_<size>/   tools/test.py at one size
    <study>/results_runs.csv, summary.csv, summary.md, plots/*.png

Kept apart from the launching code so the statistics (``seed_stats``) and the
bookkeeping can be imported and tested without starting a run.
"""
import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import os.path as osp
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config

from mmvitpe.utils.io import atomic_write
from mmvitpe.utils.tables import write_csv
from .seed_stats import paired_difference, summarize

MANIFEST = 'study.json'
# keys that say where or how a run is launched, not what it trains
_NOT_HASHED = ('work_dir', 'launcher', 'experiment_name', 'resume', 'load_from')
# what the test json holds besides metrics
_NOT_METRICS = ('time', 'data_time', 'step', 'iter', 'epoch', 'lr', 'memory')
DEFAULT_METRICS = {'mmseg': ['mIoU'], 'mmdet': ['coco/bbox_mAP', 'coco/segm_mAP']}


# ----------------------------------------------------------------- config --
def config_material(cfg: Config) -> dict:
    """The config as plain JSON data, without the keys that only say where it runs."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    data = json.loads(json.dumps(data, sort_keys=True, default=str))
    if isinstance(data.get('visualizer'), dict):  # named per run by compare_pe
        data['visualizer'].pop('name', None)
    return data


def material_hash(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]


def changed_keys(old, new, prefix: str = '') -> List[str]:
    """Dotted keys whose values differ between two JSON trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = []
        for k in sorted(set(old) | set(new)):
            name = f'{prefix}.{k}' if prefix else str(k)
            if k not in old or k not in new:
                keys.append(name)
            else:
                keys += changed_keys(old[k], new[k], name)
        return keys
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [k for i, (a, b) in enumerate(zip(old, new))
                for k in changed_keys(a, b, f'{prefix}.{i}')]
    return [] if old == new else [prefix]


def test_resize(cfg: Config) -> Tuple[str, int, object]:
    """Where the test pipeline resizes: (its cfg-options key, index, scale).

    Raises:
        ValueError: when the test pipeline has no single ``Resize`` with a
            ``scale`` (``scale_factor`` resizing has no size to override).
    """
    node, key = cfg.test_dataloader.dataset, 'test_dataloader.dataset'
    while 'pipeline' not in node and 'dataset' in node:  # dataset wrappers
        node, key = node.dataset, key + '.dataset'
    pipeline = node.get('pipeline', [])
    steps = [i for i, t in enumerate(pipeline) if str(t.get('type')).split('.')[-1] == 'Resize']
    if len(steps) != 1 or 'scale' not in pipeline[steps[0]]:
        raise ValueError(
            f'--test-sizes needs exactly one Resize with a scale in the test pipeline '
            f'({key}.pipeline), found types {[t.get("type") for t in pipeline]}; add e.g. '
            "dict(type='Resize', scale=(512, 512), keep_ratio=True) after LoadImageFromFile")
    return f'{key}.pipeline.{steps[0]}.scale', steps[0], pipeline[steps[0]]['scale']


def train_size_label(cfg: Config) -> str:
    """The training size's label: the short edge of the test Resize scale, or
    ``config`` when the test pipeline does not resize."""
    try:
        scale = test_resize(cfg)[2]
    except ValueError:
        return 'config'
    return str(scale if isinstance(scale, int) else min(scale))


def resize_option(cfg: Config, size: int) -> str:
    """The cfg-option that evaluates at ``size``: the test Resize scale scaled
    so that its short edge is ``size`` (COCO's (1333, 800) at 600 becomes
    (1000, 600); ADE20K's (2048, 512) at 1024 becomes (4096, 1024))."""
    key, _, scale = test_resize(cfg)
    if isinstance(scale, int):
        return f'{key}={size}'
    w, h = (round(v * size / min(scale)) for v in scale)
    return f'{key}=({w},{h})'


def scheme_of(cfg: Config) -> str:
    try:
        return cfg.model.backbone.pos_embed.type
    except AttributeError as e:
        raise ValueError('the config has no model.backbone.pos_embed.type: '
                         'compare_pe compares mmvitpe backbones') from e


# --------------------------------------------------------------- manifest --
class StudyError(ValueError):
    """A study dir whose manifest cannot be used, or that another study holds."""


# the fields of a run entry: name -> (types, what they are, required)
_RUN_FIELDS = {'scheme': (str, 'a string', True), 'seed': (int, 'an integer', True),
               'config_hash': (str, 'a string', True), 'dir': (str, 'a string', True),
               'status': (str, 'a string', True),
               'train_seconds': ((int, float), 'a number', True),
               'resumed_from': (list, 'a list', True), 'results': (dict, 'an object', True),
               'eval_seconds': (dict, 'an object', True),
               'checkpoint': ((str, type(None)), 'a string or null', False),
               'eval_root': (str, 'a string', False),
               'protocol': (str, 'a string', False)}
RUN_STATUSES = ('pending', 'training', 'trained')


def load_manifest(study_dir: str) -> Optional[dict]:
    """The study's manifest, checked: valid JSON of the expected shape, every run's
    work dir and checkpoint inside the study dir (hand-made runs of ``--collect``
    are named again on its command line). None when the study is new.

    Raises:
        StudyError: naming the file and what is wrong with it.
    """
    path = osp.join(study_dir, MANIFEST)
    if not osp.exists(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StudyError(f'{path}: not a readable study manifest ({e}); restore it, or start '
                         'the study in another --work-dir') from None
    _check_manifest(path, study_dir, manifest)
    return manifest


def _check_manifest(path: str, study_dir: str, manifest) -> None:
    def bad(what):
        raise StudyError(f'{path}: {what}; restore the file, or start the study in another '
                         '--work-dir')
    if not isinstance(manifest, dict) or not isinstance(manifest.get('runs'), dict) \
            or not isinstance(manifest.get('config_hash'), str):
        bad('expected an object with "config_hash" (a string) and "runs" (an object)')
    root = osp.realpath(study_dir)
    for rid, run in manifest['runs'].items():
        if not isinstance(run, dict):
            bad(f'run {rid!r} is a {type(run).__name__}, not an object')
        for name, (types, kind, required) in _RUN_FIELDS.items():
            if (required and name not in run) or (name in run and (
                    not isinstance(run[name], types) or isinstance(run[name], bool))):
                bad(f'run {rid!r}: "{name}" is {run.get(name, "absent")!r}; expected {kind}')
        if run['status'] not in RUN_STATUSES:
            bad(f'run {rid!r}: status {run["status"]!r}; valid: {list(RUN_STATUSES)}')
        if run['config_hash'] == 'collected':
            continue  # its dir comes from the --collect command line
        paths = [('dir', osp.join(study_dir, run['dir']))] + (
            [('checkpoint', run['checkpoint'])] if run.get('checkpoint') else [])
        for name, where in paths:
            resolved = osp.realpath(where)
            if osp.commonpath([root, resolved]) != root:
                bad(f'run {rid!r}: "{name}" {run[name]!r} is outside the study dir {root}')


@contextlib.contextmanager
def study_lock(study_dir: str) -> Iterator[None]:
    """Hold the study dir for one writer: a second compare_pe on it stops at once,
    naming the process that holds it, instead of overwriting its results."""
    os.makedirs(study_dir, exist_ok=True)
    path = osp.join(study_dir, '.lock')
    with open(path, 'a+') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or 'another process'
            raise StudyError(f'{study_dir}: another compare_pe is working on this study '
                             f'({holder}); wait for it to finish, or use another '
                             '--work-dir') from None
        f.seek(0)
        f.truncate()
        f.write(f'pid {os.getpid()} since {now()}')
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def save_manifest(study_dir: str, manifest: dict) -> None:
    """Write atomically: a study killed while saving keeps its last state."""
    os.makedirs(study_dir, exist_ok=True)
    with atomic_write(osp.join(study_dir, MANIFEST)) as tmp, open(tmp, 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


def save_material(study_dir: str, material: dict) -> None:
    path = osp.join(study_dir, f'config_{material_hash(material)}.json')
    if not osp.exists(path):
        os.makedirs(study_dir, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(material, f, indent=1, sort_keys=True)


def load_material(study_dir: str, digest: str) -> Optional[dict]:
    path = osp.join(study_dir, f'config_{digest}.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_id(digest: str, scheme: str, seed: int, protocol: str = '') -> str:
    return '/'.join(filter(None, [digest, protocol, f'{scheme}_seed{seed}']))


def new_run(digest: str, scheme: str, seed: int, protocol: str = '') -> dict:
    run = dict(scheme=scheme, seed=seed, config_hash=digest,
               dir=osp.join('runs', digest, protocol, f'{scheme}_seed{seed}'), status='pending',
               train_seconds=0.0, resumed_from=[], results={}, eval_seconds={})
    if protocol:
        run['protocol'] = protocol
    return run


def label(scheme: str, protocol: str = '') -> str:
    """A scheme as the report names it: 'ViTDet · LearnedPE' in a study of protocols."""
    return f'{protocol} · {scheme}' if protocol else scheme


def run_label(run: dict) -> str:
    return label(run['scheme'], run.get('protocol', ''))


def read_test_metrics(eval_dir: str) -> Dict[str, float]:
    """Metrics of the newest tools/test.py run in ``eval_dir``, as mmengine's
    LoggerHook writes them (<timestamp>/<timestamp>.json)."""
    files = sorted(glob.glob(osp.join(eval_dir, '*', '*.json')), key=osp.getmtime)
    if not files:
        raise FileNotFoundError(f'no test results (*/*.json) under {eval_dir}')
    with open(files[-1]) as f:
        data = json.load(f)
    return {k: float(v) for k, v in data.items()
            if k not in _NOT_METRICS and isinstance(v, (int, float))}


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine's CheckpointHook last saved in ``work_dir``."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(path):
        return None
    with open(path) as f:
        ckpt = f.read().strip()
    return ckpt if osp.exists(ckpt) else None


# ---------------------------------------------------------------- report --
def aggregate(runs: Sequence[dict], metrics: Sequence[str], sizes: Sequence[str],
              baseline: str, schemes: Sequence[str], protocols: Sequence[str] = ('',)
              ) -> List[dict]:
    """One row per (metric, test size, protocol, scheme): mean/std/n over seeds and
    the paired difference to ``baseline`` on the same protocol (95 % t interval, see
    seed_stats). ``protocols``: '' for a study of one config."""
    rows = []
    for metric in metrics:
        for size in sizes:
            for protocol in protocols:
                by_scheme = {s: {r['seed']: r['results'][size][metric] for r in runs
                                 if r['scheme'] == s and r.get('protocol', '') == protocol
                                 and metric in r['results'].get(size, {})}
                             for s in schemes}
                for scheme in schemes:
                    values = by_scheme[scheme]
                    if not values:
                        continue
                    summary = summarize(values[s] for s in sorted(values))
                    row = dict(metric=metric, test_size=size, protocol=protocol, scheme=scheme,
                               label=label(scheme, protocol), n=summary.n, mean=summary.mean,
                               std=summary.std, seeds=' '.join(str(s) for s in sorted(values)))
                    if scheme != baseline and set(values) & set(by_scheme[baseline]):
                        diff = paired_difference(values, by_scheme[baseline])
                        row.update(diff_n=diff.n, diff_mean=diff.mean, diff_low=diff.low,
                                   diff_high=diff.high, verdict=diff.verdict)
                    rows.append(row)
    return rows


def _fmt(x: float, digits: int = 2) -> str:
    return '–' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def write_reports(study_dir: str, runs: Sequence[dict], rows: Sequence[dict],
                  metrics: Sequence[str], sizes: Sequence[str], train_label: str,
                  baseline: str, schemes: Sequence[str], notes: Sequence[str] = (),
                  protocols: Sequence[str] = ('',)) -> dict:
    """results_runs.csv, summary.csv, summary.md and the plots; returns their paths.
    A study of protocols gets a ``protocol`` column and a row per protocol and scheme."""
    paths = dict(runs_csv=osp.join(study_dir, 'results_runs.csv'),
                 summary_csv=osp.join(study_dir, 'summary.csv'),
                 markdown=osp.join(study_dir, 'summary.md'))
    axis = ['protocol'] if list(protocols) != [''] else []
    run_columns = axis + ['scheme', 'seed', 'test_size', 'metric', 'value', 'config_hash',
                          'run_dir']
    write_csv([dict(zip(run_columns, ([r.get('protocol', '')] if axis else []) + [
                   r['scheme'], r['seed'], size, metric, value, r.get('config_hash', ''),
                   r['dir']]))
               for r in runs for size, values in sorted(r['results'].items())
               for metric, value in sorted(values.items())], paths['runs_csv'], run_columns)
    columns = ['metric', 'test_size'] + axis + ['scheme', 'n', 'mean', 'std', 'seeds', 'diff_n',
                                                'diff_mean', 'diff_low', 'diff_high', 'verdict']
    write_csv([{k: row.get(k, '') for k in columns} for row in rows], paths['summary_csv'],
              columns)
    labels = [label(s, p) for p in protocols for s in schemes]
    paths['markdown_text'] = markdown(rows, metrics, sizes, train_label, baseline, labels,
                                      notes)
    with open(paths['markdown'], 'w') as f:
        f.write(paths['markdown_text'])
    paths['plots'] = plot(study_dir, rows, metrics, sizes, train_label, labels, runs)
    return paths


def size_name(size: str, train_label: str) -> str:
    return f'{size} (train)' if size == train_label else size


def markdown(rows, metrics, sizes, train_label, baseline, schemes, notes=()) -> str:
    """Per metric: mean ± std (n) per scheme and test size, then the paired
    difference to the baseline with its 95 % t interval and verdict. ``schemes``
    are the rows' labels (protocol · scheme in a study of protocols)."""
    index = {(r['metric'], r['test_size'], r['label']): r for r in rows}
    lines = []
    for metric in metrics:
        head = ' | '.join(size_name(s, train_label) for s in sizes)
        lines += [f'### {metric}: mean ± std over seeds (n)', '',
                  f'| scheme | {head} |', '|---|' + '---:|' * len(sizes)]
        for scheme in schemes:
            cells = []
            for size in sizes:
                r = index.get((metric, size, scheme))
                cells.append('–' if r is None else
                             f"{_fmt(r['mean'])} ± {_fmt(r['std'])} ({r['n']})")
            lines.append(f"| {scheme} | {' | '.join(cells)} |")
        others = [s for s in schemes if s != baseline and not s.endswith(f' · {baseline}')]
        if others:
            lines += ['', f'### {metric}: paired difference to {baseline} per seed, '
                      'mean [95 % t interval] (n), verdict', '',
                      f'| scheme | {head} |', '|---|' + '---|' * len(sizes)]
            for scheme in others:
                cells = []
                for size in sizes:
                    r = index.get((metric, size, scheme))
                    if r is None or 'verdict' not in r:
                        cells.append('–')
                    else:
                        cells.append(f"{r['diff_mean']:+.2f} [{_fmt(r['diff_low'])}, "
                                     f"{_fmt(r['diff_high'])}] ({r['diff_n']}) {r['verdict']}")
                lines.append(f"| {scheme} | {' | '.join(cells)} |")
        lines.append('')
    lines += [f'- {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def plot(study_dir, rows, metrics, sizes, train_label, schemes, runs) -> List[str]:
    """Per metric: error bars per scheme (one series per test size, seeds as
    dots) and the metric against the test size (one line per scheme)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    out = osp.join(study_dir, 'plots')
    os.makedirs(out, exist_ok=True)
    index = {(r['metric'], r['test_size'], r['label']): r for r in rows}
    paths = []
    for metric in metrics:
        safe = metric.replace('/', '_')
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(schemes), 3.6))
        width = 0.7 / max(len(sizes), 1)
        for k, size in enumerate(sizes):
            xs, means, stds = [], [], []
            for i, scheme in enumerate(schemes):
                r = index.get((metric, size, scheme))
                if r is None:
                    continue
                x = i + (k - (len(sizes) - 1) / 2) * width
                xs.append(x)
                means.append(r['mean'])
                stds.append(0.0 if math.isnan(r['std']) else r['std'])
                seeds = [run['results'][size][metric] for run in runs
                         if run_label(run) == scheme and metric in run['results'].get(size, {})]
                ax.plot([x] * len(seeds), seeds, '.', color='0.4', ms=4, zorder=3)
            ax.errorbar(xs, means, yerr=stds, fmt='o', capsize=4,
                        label=f'test size {size_name(size, train_label)}')
        long = any(' · ' in s for s in schemes)  # protocol · scheme
        ax.set_xticks(range(len(schemes)), schemes, rotation=25 if long else 0,
                      ha='right' if long else 'center')
        ax.set(ylabel=metric, title=f'{metric}: mean ± std over seeds (dots: seeds)')
        paths.append(_save(plt, fig, ax, osp.join(out, f'{safe}_by_scheme.png')))

        numeric = [s for s in sizes if s.isdigit()]
        if len(numeric) > 1:
            fig, ax = plt.subplots(figsize=(5, 3.6))
            for scheme in schemes:
                pts = [(int(s), index[(metric, s, scheme)]) for s in sorted(numeric, key=int)
                       if (metric, s, scheme) in index]
                if pts:
                    ax.errorbar([p[0] for p in pts], [p[1]['mean'] for p in pts],
                                yerr=[0.0 if math.isnan(p[1]['std']) else p[1]['std']
                                      for p in pts], marker='o', capsize=4, label=scheme)
            if train_label.isdigit():
                ax.axvline(int(train_label), color='0.6', ls='--', lw=1, label='train size')
            ax.set(xlabel='test size (short edge, px)', ylabel=metric,
                   title=f'{metric} vs test size (mean ± std)')
            paths.append(_save(plt, fig, ax, osp.join(out, f'{safe}_vs_test_size.png')))
    return paths


def _save(plt, fig, ax, path: str) -> str:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s'


def now() -> str:
    return time.strftime('%Y-%m-%d %H:%M:%S')
