"""What the golden-fixture scripts share: upstream files from a git mirror, written
unmodified for import; deterministic random weights; the fixture file."""
import argparse
import hashlib
import os
import subprocess
from typing import Dict, Iterable, Tuple

import torch
from torch import nn


def git(repo: str, *args: str) -> str:
    return subprocess.run(['git', '-C', repo, *args], capture_output=True, text=True,
                          check=True).stdout


def python_files(repo: str, rev: str, folder: str) -> list:
    return [p for p in git(repo, 'ls-tree', '--name-only', rev, folder + '/').split()
            if p.endswith('.py')]


def write_upstream(repo: str, rev: str, paths: Iterable[str], tmp: str) -> Dict[str, str]:
    """The files at ``rev`` into ``tmp`` as they are; returns {path: sha256}."""
    digests = {}
    for path in paths:
        text = git(repo, 'show', f'{rev}:{path}')
        os.makedirs(os.path.dirname(os.path.join(tmp, path)), exist_ok=True)
        with open(os.path.join(tmp, path), 'w') as f:
            f.write(text)
        digests[path] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def randomize(model: nn.Module, seed: int) -> None:
    """Every floating tensor off its init: norm weights ~ 1 + N(0, 0.1), BN
    variances in [0.5, 1.5), matrices and kernels ~ N(0, 1 / fan_in), the rest
    (biases, layer scales, tokens) ~ N(0, 0.1). RoPE's periods stay: they are a
    function of base and head width."""
    gen = torch.Generator().manual_seed(seed)
    norms = (nn.LayerNorm, nn.BatchNorm2d)
    with torch.no_grad():
        for module in model.modules():
            for name, t in list(module.named_parameters(recurse=False)) + \
                    list(module.named_buffers(recurse=False)):
                if not t.is_floating_point() or name == 'periods':
                    continue
                noise = torch.randn(t.shape, generator=gen)
                if name == 'running_var':
                    t.copy_(noise.abs().clamp(max=1) * 0.5 + 0.5)
                elif isinstance(module, norms) and name == 'weight':
                    t.copy_(1 + 0.1 * noise)
                elif t.dim() >= 2 and name == 'weight':
                    t.copy_(noise / t[0].numel() ** 0.5)
                else:
                    t.copy_(0.1 * noise)


def save_fixture(result: dict, out: str, name: str, commit: str, expected: str) -> None:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    torch.save(result, path)
    print(f'wrote {path} ({os.path.getsize(path)} bytes); commit {commit}'
          + ('' if commit == expected else f' (expected {expected})'))


def parse_args(doc: str, upstream: str, expected: str) -> Tuple[argparse.Namespace, str]:
    """The scripts' command line (mirror, --rev, --out), single-threaded torch, and
    the commit the revision names."""
    parser = argparse.ArgumentParser(description=doc.split('\n')[0])
    parser.add_argument('repo', help=f'{upstream} mirror or checkout')
    parser.add_argument('--rev', default=expected)
    parser.add_argument('--out', default='tests/fixtures/golden')
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args, git(args.repo, 'rev-parse', args.rev).strip()
