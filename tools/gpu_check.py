"""One prepared check of mmvitpe on a CUDA machine, within one time budget.

Parts, run in this order, each in its own process (group) and logged to OUT:

  env      versions, the GPU, float32 precision settings, whether mmvitpe and
           mmcv's compiled ops import, which deformable-attention ops one
           ViT-Adapter forward+backward dispatches, and which SDPA kernels a
           ViT training step runs (fp32, bf16; without and with a learned bias)
  tests    the <device> cases of every test that takes the ``device`` fixture
           (``pytest -m <device> tests``; tests/conftest.py): the PE-core and
           ViT-Adapter tests of every scheme (forward/backward at 3 grids,
           bf16/fp16 autocast against fp32, gradient checkpointing, which SDPA
           kernel ran)
  pe_512, pe_1024
           tools/benchmark_pe.py at that size, batch 8, bf16 autocast, with
           --kernel-cost (PE overhead × NoPE against the CPU targets)
  adapter  tools/benchmark_adapter.py: ViT-Adapter-T forward, forward+backward
           (512², batch 2) and peak memory of one training step (1024², batch 1;
           torch.cuda.max_memory_allocated) for NoPE LearnedPE MPVG RoPEMixed
           RelPosBias SPSA

Budget: a part is started only while at least its minimum time is left of
--budget, and is stopped (its whole process group) when it runs past its cap
or the budget's end; what was skipped or stopped, and why, is in the report.
OUT/report.json and OUT/report.md are rewritten after every part, so a run
killed from outside still leaves what it finished.

The benchmarks' tables also land in --results-dir (default results/ in the
repository), one CSV per benchmark, GPU and torch version (see the benchmarks'
``--results-dir``).

Exit status: 0 every part ran and passed; 1 a part failed or was stopped;
2 none failed, but parts were skipped for the budget.

Usage, on a machine with a CUDA GPU and mmvitpe's requirements installed:
    python tools/gpu_check.py --device cuda --out DIR
On a CUDA machine without network, tools/gpu/fetch_wheels.sh (run where there is
network) and tools/gpu/launch.sh install what is missing and run this check.
``--device cpu --quick`` runs the same parts at toy sizes (the test suite's dry run).
"""
import argparse
import csv
import datetime
import json
import math
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from timing import results_dir  # tools/timing.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAPTER_SCHEMES = ['NoPE', 'LearnedPE', 'MPVG', 'RoPEMixed', 'RelPosBias', 'SPSA']
# fwd+bwd × NoPE targets of the README's PE overhead table (set on CPU)
PE_TARGETS = {'LearnedPE': 1.03, 'FactorizedPE': 1.03, 'SinCosPE': 1.03, 'LaPE': 1.03,
              'PVG': 1.03, 'MPVG': 1.03, 'PEG': 1.08, 'RoPEAxial': 1.08, 'RoPEMixed': 1.08,
              'RelPosBias': 1.08, 'SPSA': 1.30}
# --quick: NoPE's cases of one PE-core and one ViT-Adapter test
QUICK_TESTS = 'NoPE and (any_grid_forward_backward or every_pe_scheme_runs_forward_backward)'
DEFAULT_BUDGET_S = 330  # with launch.sh's install and start-up, about 7 minutes in all
LOG_TAIL_LINES = 40


@dataclass
class Part:
    name: str
    cmd: List[str]
    cap_s: float  # stopped after this long
    min_s: float  # not started with less than this left of the budget
    parse: Callable[['Part', dict], None] = lambda part, result: None
    files: dict = field(default_factory=dict)  # outputs the parser reads, by role


# ---- the parts -------------------------------------------------------------

def probe(device: str, quick: bool) -> dict:
    """The ``env`` part, run in a child process: what this machine has."""
    import importlib.metadata
    import platform

    import torch
    info = dict(python=platform.python_version(), torch=torch.__version__,
                torch_cuda=torch.version.cuda,
                float32_matmul_precision=torch.get_float32_matmul_precision(),
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32)
    if device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f'{props.major}.{props.minor}',
                    cudnn=torch.backends.cudnn.version())
    info['versions'] = {}
    for dist in ('mmengine', 'mmcv', 'mmcv-lite', 'timm', 'numpy', 'mmdet', 'mmsegmentation'):
        try:
            info['versions'][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        import mmcv._ext  # noqa: F401
        info['mmcv_compiled_ops'] = 'yes'
    except Exception as e:  # ImportError, or a build for another torch (OSError)
        info['mmcv_compiled_ops'] = f'no ({type(e).__name__}: {e})'
    try:
        import mmvitpe  # noqa: F401
        from mmvitpe.models import ViTAdapter
    except Exception as e:
        info['mmvitpe_import'] = f'{type(e).__name__}: {e}'
        return info
    info['mmvitpe_import'] = 'ok'
    info['mmvitpe_custom_ops'] = sorted(op for op in torch._C._dispatch_get_all_op_names()
                                        if op.startswith('mmvitpe::'))
    # Which deformable-attention implementation runs here, read off what one
    # forward+backward dispatches (an op of ours, mmcv's autograd function,
    # grid_sample of a pure-PyTorch core), whatever module provides it.
    model = ViTAdapter(preset='tiny', depth=2, interaction_indexes=[[0, 0], [1, 1]],
                       pretrain_size=64, embed_dim=64, num_heads=4, deform_num_heads=4,
                       conv_inplane=8).to(device)
    ops = dispatched(lambda: sum(o.mean() for o in model(
        torch.randn(1, 3, 64, 64, device=device))).backward())
    info['deformable_attention_ops'] = [
        op for op in ops if op.startswith(('mmvitpe::', 'aten::grid_sampler'))
        or 'DeformableAttn' in op]  # mmcv's autograd function
    info['sdpa_kernels'] = sdpa_kernels(device, quick)
    return info


def dispatched(step: Callable[[], object]) -> List[str]:
    """The ops and autograd functions ``step()`` ran, read off the profiler."""
    import torch
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    return sorted({e.key for e in prof.key_averages() if not e.key.startswith('autograd::')})


def sdpa_kernels(device: str, quick: bool) -> dict:
    """The SDPA kernels one training step of a small ViT runs, without and with
    a learned bias (whose gradient CPU SDPA cannot fuse), in fp32 and bf16."""
    import torch

    from mmvitpe.models import PEViT
    kernels = {}
    for scheme in ('NoPE', 'RelPosBias')[:1 if quick else 2]:
        model = PEViT(embed_dim=128, depth=1, num_heads=2, patch_size=16, pretrain_size=256,
                      pos_embed=dict(type=scheme)).to(device)
        img = torch.randn(2, 3, 256, 256, device=device)
        for name, dtype in [('fp32', torch.float32), ('bf16', torch.bfloat16)][:1 if quick else 2]:
            def step():
                with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
                    model(img)[0].float().sum().backward()
            kernels[f'{scheme} {name}'] = [op for op in dispatched(step)
                                           if op.startswith('aten::_scaled_dot_product')]
    return kernels


def parse_env(part: Part, result: dict) -> None:
    if os.path.exists(part.files['info']):  # the probe's own file: its log is for people
        with open(part.files['info']) as f:
            result['info'] = json.load(f)
        if result['info'].get('mmvitpe_import') not in (None, 'ok'):
            result['status'] = 'failed'


def parse_tests(part: Part, result: dict) -> None:
    path = part.files['junit']
    if not os.path.exists(path):
        return
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    failures = []
    for case in ET.parse(path).getroot().iter('testcase'):
        outcome = next((c for c in case if c.tag in ('failure', 'error', 'skipped')), None)
        kind = {None: 'passed', 'failure': 'failed', 'error': 'errors',
                'skipped': 'skipped'}[outcome.tag if outcome is not None else None]
        counts[kind] += 1
        if kind in ('failed', 'errors'):
            message = (outcome.get('message') or outcome.text or '').strip().splitlines()
            failures.append(dict(test=f"{case.get('classname')}::{case.get('name')}",
                                 message=message[0][:300] if message else ''))
    result.update(counts=counts, failures=failures)
    if counts['passed'] == 0:  # nothing ran: a selection that matches no test is a failure too
        result['status'] = 'failed'


def parse_pe(part: Part, result: dict) -> None:
    rows = read_csv(part.files['csv'])
    for row in rows:
        row['target'] = PE_TARGETS.get(row['scheme'])
        row['meets_target'] = (None if row['target'] is None
                               else row['train_ratio'] <= row['target'])
    result['rows'] = rows
    lines = read_lines(result['log_path'])
    start = next((i for i, line in enumerate(lines)
                  if line.startswith('One global attention call')), None)
    if start is not None:
        result['kernel_cost'] = [line for line in lines[start:] if line.strip()]


def parse_adapter(part: Part, result: dict) -> None:
    result['rows'] = read_csv(part.files['csv'])


# Per mode: extra arguments of each command, and each part's cap in seconds
# (the full run's caps add up to more than the budget: a slow part takes
# from the later ones, and the budget, not the caps, ends the run).
RUNS = dict(
    full=dict(tests=[], pe_sizes=[512, 1024], pe=['--batch', '8'],
              adapter=['--schemes', *ADAPTER_SCHEMES],
              caps=dict(env=90, tests=150, pe_512=60, pe_1024=90, adapter=150)),
    quick=dict(tests=['-k', QUICK_TESTS], pe_sizes=[64],
               pe=['--batch', '1', '--repeats', '1', '--warmup', '0', '--schemes', 'NoPE',
                   'RelPosBias'],
               # no memory step: on CPU it measures RSS, not the CUDA branch, in one more process
               adapter=['--schemes', 'NoPE', '--size', '64', '--batch', '1', '--repeats', '1',
                        '--warmup', '0', '--no-memory'],
               caps=dict(env=300, tests=300, pe_64=300, adapter=300)))


def plan(args, tmp: str) -> List[Part]:
    """The parts to run, env first, then those of --parts in their fixed order."""
    py, device = sys.executable, args.device
    run = RUNS['quick' if args.quick else 'full']
    caps = run['caps']
    junit, info = os.path.join(tmp, 'junit.xml'), os.path.join(tmp, 'env.json')
    parts = [Part('env', [py, os.path.abspath(__file__), '--probe', info, '--device', device]
                  + (['--quick'] if args.quick else []),
                  cap_s=caps['env'], min_s=5, parse=parse_env, files=dict(info=info)),
             Part('tests', [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-m', device,
                            '-rfE', '--continue-on-collection-errors', f'--junitxml={junit}',
                            'tests', *run['tests']],
                  cap_s=caps['tests'], min_s=30, parse=parse_tests, files=dict(junit=junit))]
    results = ['--results-dir', args.results_dir]
    for size in run['pe_sizes']:
        csv_path = os.path.join(tmp, f'pe_{size}.csv')
        parts.append(Part(f'pe_{size}', [py, 'tools/benchmark_pe.py', '--device', device,
                                         '--dtype', 'bf16', '--size', str(size), '--kernel-cost',
                                         '--csv', csv_path, *results, *run['pe']],
                          cap_s=caps[f'pe_{size}'], min_s=20, parse=parse_pe,
                          files=dict(csv=csv_path)))
    csv_path = os.path.join(tmp, 'adapter.csv')
    parts.append(Part('adapter', [py, 'tools/benchmark_adapter.py', '--device', device, '--csv',
                                  csv_path, *results, *run['adapter']],
                      cap_s=caps['adapter'], min_s=45, parse=parse_adapter,
                      files=dict(csv=csv_path)))
    return [p for p in parts if p.name == 'env' or p.name.split('_')[0] in args.parts]


# ---- running under the budget ----------------------------------------------

def run_part(part: Part, deadline: float, out_dir: str) -> dict:
    """Run one part in its own process group, stopped at its cap or the deadline."""
    result = dict(command=shlex.join(part.cmd), log=f'{part.name}.log')
    left = deadline - time.monotonic()
    if left < part.min_s:
        result.update(status='skipped', reason=f'{max(left, 0):.0f} s of the budget left, '
                                               f'{part.min_s:.0f} s needed to start')
        return result
    limit = min(part.cap_s, left)
    result['log_path'] = os.path.join(out_dir, result['log'])
    env = dict(os.environ, PYTHONUNBUFFERED='1',
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    start, cpu_start = time.monotonic(), children_cpu_s()
    with open(result['log_path'], 'w') as log:
        log.write(f"$ {result['command']}\n")
        log.flush()
        proc = subprocess.Popen(part.cmd, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            returncode = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the part's workers too
            proc.wait()
            returncode = None
    # CPU seconds next to wall seconds: a part that used few was waiting (on the GPU)
    result.update(seconds=round(time.monotonic() - start, 1),
                  cpu_s=round(children_cpu_s() - cpu_start, 1))
    if returncode is None:
        result.update(status='stopped', reason=f'ran past {limit:.0f} s ('
                      + ('its cap' if limit == part.cap_s else 'the end of the budget') + ')')
    else:
        result.update(status='ok' if returncode == 0 else 'failed', returncode=returncode)
    try:
        part.parse(part, result)
    except Exception as e:  # a stopped or failed part's half-written output, or none
        result['parse_error'] = f'{type(e).__name__}: {e}'
        if result['status'] == 'ok':
            result.update(status='failed', reason='its output could not be read')
    if result['status'] != 'ok':
        result['log_tail'] = read_lines(result['log_path'])[-LOG_TAIL_LINES:]
    return result


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_lines(path: str) -> List[str]:
    with open(path, errors='replace') as f:
        return f.read().splitlines()


def read_csv(path: str) -> List[dict]:
    with open(path, newline='') as f:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def number(text: str):
    """A CSV cell as a float where it is one; NaN (not measured) as None, valid JSON."""
    try:
        value = float(text)
    except ValueError:
        return text
    return None if value != value else value


# ---- the report --------------------------------------------------------------

def fmt(value, digits: int) -> str:
    return '–' if value is None else f'{value:.{digits}f}'


def env_section(result: dict) -> List[str]:
    info = result.get('info', {})
    lines = ['## Environment', '', '| | |', '|---|---|']
    for key in ('gpu', 'gpu_memory_gib', 'compute_capability', 'python', 'torch', 'torch_cuda',
                'cudnn', 'float32_matmul_precision', 'cudnn_allow_tf32', 'mmcv_compiled_ops',
                'mmvitpe_import', 'mmvitpe_custom_ops', 'deformable_attention_ops'):
        if key in info:
            value = info[key]
            lines.append(f"| {key} | {', '.join(value) if isinstance(value, list) else value} |")
    lines += [f"| SDPA kernels, {case} training step | {', '.join(ops)} |"
              for case, ops in info.get('sdpa_kernels', {}).items()]
    lines += [f'| {dist} | {version} |' for dist, version in info.get('versions', {}).items()]
    return lines


def tests_section(result: dict) -> List[str]:
    lines = ['## Tests', '', f"`{result['command']}`", '']
    if 'counts' in result:
        c = result['counts']
        lines.append(f"{c['passed']} passed, {c['failed']} failed, {c['errors']} errors, "
                     f"{c['skipped']} skipped in {result['seconds']} s.")
        lines += [f"- `{f['test']}`: {f['message']}" for f in result['failures']]
    return lines


def pe_section(result: dict, name: str) -> List[str]:
    lines = [f'## PE overhead in the ViT core ({name})', '', f"`{result['command']}`", '']
    if 'rows' in result:
        lines += ['| scheme | forward ms | × NoPE | fwd+bwd ms | × NoPE | CPU target | meets |',
                  '|---|---:|---:|---:|---:|---|---|']
        for r in result['rows']:
            meets = {None: '', True: 'yes', False: '**no**'}[r['meets_target']]
            target = f"≤ {r['target']:.2f}" if r['target'] else '–'
            lines.append(f"| {r['scheme']} | {fmt(r['forward_ms'], 2)} | "
                         f"{fmt(r['forward_ratio'], 3)} | {fmt(r['train_ms'], 2)} | "
                         f"{fmt(r['train_ratio'], 3)} | {target} | {meets} |")
    if 'kernel_cost' in result:
        lines += [''] + result['kernel_cost']
    return lines


def adapter_section(result: dict) -> List[str]:
    lines = ['## ViT-Adapter-T step', '', f"`{result['command']}`", '']
    if 'rows' in result:
        base = result['rows'][0]['variant']  # benchmark_adapter's ratios are to its first
        lines += [f'| variant | fwd ms | × {base} | fwd+bwd ms | × {base} | peak train MiB '
                  f'| × {base} |', '|---|---:|---:|---:|---:|---:|---:|']
        lines += [f"| {r['variant']} | {fmt(r['fwd_ms'], 1)} | {fmt(r['fwd_ratio'], 2)} | "
                  f"{fmt(r['train_ms'], 1)} | {fmt(r['train_ratio'], 2)} | "
                  f"{fmt(r['memory_mib'], 0)} | {fmt(r['memory_ratio'], 2)} |"
                  for r in result['rows']]
    return lines


def write_atomically(path: str, text: str) -> None:
    """A reader, or a run killed meanwhile, sees the old file or the new one."""
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(report: dict, out_dir: str) -> None:
    write_atomically(os.path.join(out_dir, 'report.json'),
                     json.dumps(report, indent=1, allow_nan=False))
    parts = report['parts']
    gpu = parts.get('env', {}).get('info', {}).get('gpu', report['device'])
    lines = [f'# mmvitpe GPU check: {gpu}', '',
             f"{report['started']}; `{report['command']}`; budget {report['budget_s']} s, "
             f"{report['elapsed_s']} s used.", '',
             '| part | status | seconds | CPU seconds | note |', '|---|---|---:|---:|---|']
    lines += [f"| {name} | {r['status']} | {r.get('seconds', '–')} | {r.get('cpu_s', '–')} | "
              f"{r.get('reason', '')} |" for name, r in parts.items()]
    sections = dict(env=env_section, tests=tests_section, adapter=adapter_section)
    for name, result in parts.items():
        if result['status'] == 'skipped':
            continue
        if name in sections:
            lines += [''] + sections[name](result)
        else:
            lines += [''] + pe_section(result, name)
        if 'log_tail' in result:
            lines += ['', f"Last lines of {result['log']}:", '', '```', *result['log_tail'], '```']
    write_atomically(os.path.join(out_dir, 'report.md'), '\n'.join(lines) + '\n')


def budget_seconds(text: str) -> float:
    """argparse type of --budget: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'{text!r} is not a positive, finite number of seconds')
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    parser.add_argument('--out', default=os.path.join(REPO, 'work_dirs', 'gpu_check'))
    parser.add_argument('--budget', type=budget_seconds, default=DEFAULT_BUDGET_S,
                        help='seconds for all parts together, > 0 (default: %(default)s)')
    parser.add_argument('--results-dir', type=results_dir, metavar='DIR',
                        default=os.path.join(REPO, 'results'),
                        help="where the benchmarks also write their tables (each one's "
                        '--results-dir; default: %(default)s)')
    parser.add_argument('--parts', nargs='+', default=['tests', 'pe', 'adapter'],
                        choices=['tests', 'pe', 'adapter'],
                        help='which parts after env (default: all)')
    parser.add_argument('--quick', action='store_true', help='toy sizes: a dry run')
    parser.add_argument('--probe', metavar='JSON', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:  # the env part: what it found goes to its own file, not the log
        write_atomically(args.probe, json.dumps(probe(args.device, args.quick)))
        return 0
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            parser.error('--device cuda: torch sees no CUDA device here '
                         '(use --device cpu --quick for a dry run)')
    os.makedirs(args.out, exist_ok=True)
    start = time.monotonic()
    deadline = start + args.budget
    report = dict(started=datetime.datetime.now().isoformat(timespec='seconds'),
                  command=shlex.join([os.path.relpath(__file__, REPO),
                                      *(argv if argv is not None else sys.argv[1:])]),
                  device=args.device, quick=args.quick, budget_s=args.budget, parts={})
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp:
        for part in plan(args, tmp):
            result = run_part(part, deadline, args.out)
            result.pop('log_path', None)
            report['parts'][part.name] = result
            report['elapsed_s'] = round(time.monotonic() - start, 1)
            report['skipped'] = [n for n, r in report['parts'].items()
                                 if r['status'] == 'skipped']
            print(f"[gpu_check] {part.name}: {result['status']}"
                  f"{' (' + result['reason'] + ')' if 'reason' in result else ''}"
                  f" {result.get('seconds', '')}", flush=True)
            write_report(report, args.out)
    statuses = [r['status'] for r in report['parts'].values()]
    print(f"[gpu_check] report: {os.path.join(args.out, 'report.md')}")
    if any(s in ('failed', 'stopped') for s in statuses):
        return 1
    return 2 if report['skipped'] else 0


if __name__ == '__main__':
    sys.exit(main())
