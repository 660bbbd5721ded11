"""The documentation: a short README whose quick start builds and whose commands parse, links
that resolve, every tool, config family and PE scheme reachable from the docs, and the docs
about the software only."""
import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')


def read(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def doc_pages() -> list:
    return [README, *glob.glob(os.path.join(REPO, 'docs', '*.md')),
            *glob.glob(os.path.join(REPO, 'configs', '*', 'README.md'))]


def all_docs_text() -> str:
    return '\n'.join(read(p) for p in doc_pages())


def test_the_readme_is_at_most_150_lines():
    assert len(read(README).splitlines()) <= 150


@pytest.mark.parametrize('page', doc_pages(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves(page):
    text = re.sub(r'```.*?```', '', read(page), flags=re.S)  # code is not links
    links = re.findall(r'\]\(([^)\s]+)\)', text)
    assert links or page.endswith(os.path.join('demo', 'README.md')) or 'configs' in page
    for link in links:
        if re.match(r'[a-z]+://|#|mailto:', link):
            continue
        target = os.path.normpath(os.path.join(os.path.dirname(page), link.split('#')[0]))
        assert os.path.exists(target), f'{os.path.relpath(page, REPO)} links to missing {link}'


TOOLS = sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'tools', '**', '*.*'),
                                                recursive=True)
    if p.endswith(('.py', '.sh')) and os.path.basename(p) not in
    # modules the tools import, not commands
    ('common.py', 'timing.py', 'upstream.py'))


@pytest.mark.parametrize('tool', TOOLS)
def test_every_tool_is_documented(tool):
    assert tool in all_docs_text(), f'{tool} is named on no docs page'


@pytest.mark.parametrize('family', sorted(
    d for d in os.listdir(os.path.join(REPO, 'configs')) if not d.startswith('_')))
def test_every_config_family_has_a_readme_linked_from_the_readme(family):
    assert os.path.exists(os.path.join(REPO, 'configs', family, 'README.md'))
    assert f'configs/{family}/README.md' in read(README)


def test_every_registered_scheme_has_a_card():
    from mmvitpe.registry import POS_ENCODINGS
    cards = set(re.findall(r'^###+ `?(\w+)`?', read(os.path.join(REPO, 'docs', 'pe_schemes.md')),
                           flags=re.M))
    schemes = set(POS_ENCODINGS.module_dict) - {'Compose'}
    assert schemes <= cards, f'no card for {sorted(schemes - cards)}'


# How the project was made is not the users' business: no word of it in any tracked file.
MAKING_OF = re.compile(r'\b(this|a|the previous|earlier) session\b|\bstop \d+\b|\bissue \d+\b|'
                       r'\blent\b|device tool|timeout_s|no GPU was|\bcarry\b',
                       flags=re.I)


def test_no_tracked_file_speaks_of_how_the_project_was_made():
    files = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    found = []
    for name in files:
        if name == 'tests/test_docs.py' or not name.endswith(('.py', '.md', '.sh', '.txt',
                                                                 '.cpp', '.cfg', '.toml')):
            continue
        for number, line in enumerate(read(os.path.join(REPO, name)).splitlines(), 1):
            if MAKING_OF.search(line):
                found.append(f'{name}:{number}: {line.strip()}')
    assert not found, '\n'.join(found)


def quick_start_config(tmp_path) -> str:
    blocks = re.findall(r'```python\n(.*?)```', read(README), flags=re.S)
    config = next(b for b in blocks if "type='mmvitpe.ViTAdapter'" in b)
    path = tmp_path / 'my_config.py'
    path.write_text(config)
    return str(path)


def test_the_quick_start_config_builds_and_runs(tmp_path):
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile(quick_start_config(tmp_path))
    assert cfg.model.backbone.pos_embed.type == 'RoPEMixed'
    model = MODELS.build(cfg.model)  # weights are never loaded while building
    model.eval()
    with torch.no_grad():
        features = model.extract_feat(torch.randn(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in features] == [(24, 32), (12, 16), (6, 8), (3, 4),
                                                       (2, 2)]


def readme_commands() -> list:
    """The README's `python tools/...` command lines, continuation lines joined."""
    text = re.sub(r'\\\n\s*', ' ', read(README))
    return [line.split('#')[0].split() for line in text.splitlines()
            if line.startswith('python tools/')]


def parse_with_the_tool(tool: str, args: list) -> None:
    """The tool's own argument parser on ``args`` (in a subprocess: it reads sys.argv)."""
    module = os.path.splitext(os.path.basename(tool))[0]
    code = (f'import sys; sys.path.insert(0, "tools"); sys.argv = {[tool, *args]!r}; '
            f'import {module}; {module}.parse_args()')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, f'{tool} {args}: {result.stderr[-2000:]}'


def test_the_readme_commands_run_on_the_quick_start_config(tmp_path):
    """Each README command with the quick-start config as `my_config.py`: the weight
    conversion converts a DeiT-T state dict (timm's layout, random values) strictly into the
    config's RoPEMixed backbone; compare_pe runs its dry run (schemes, seeds and sizes
    checked, nothing trained); train.py and test.py parse their arguments, and train.py's
    --cfg-options are checked against the config as train.py checks them."""
    import timm
    import torch
    from mmengine.config import Config

    from mmvitpe.apis.launch import check_cfg_options
    config = quick_start_config(tmp_path)
    commands = readme_commands()
    assert {c[1] for c in commands} == {'tools/train.py', 'tools/test.py',
                                        'tools/compare_pe.py', 'tools/convert_weights.py'}
    for command in commands:
        tool = command[1]
        args = [config if a == 'my_config.py' else a for a in command[2:]]
        if tool == 'tools/compare_pe.py':
            assert '--dry-run' in args
            args += ['--work-dir', str(tmp_path / 'study')]
        elif tool == 'tools/convert_weights.py':
            src, out = args[0], args[2]
            deit = timm.create_model('deit_tiny_patch16_224', pretrained=False)
            torch.save(deit.state_dict(), tmp_path / src)
            args = [str(tmp_path / src), config, str(tmp_path / out)]
        if tool in ('tools/compare_pe.py', 'tools/convert_weights.py'):
            result = subprocess.run([sys.executable, tool, *args], cwd=REPO,
                                    capture_output=True, text=True)
            assert result.returncode == 0, f'{command}: {result.stderr[-2000:]}'
            continue
        if '--cfg-options' in args:
            at = args.index('--cfg-options')
            check_cfg_options(Config.fromfile(config), dict(a.split('=', 1) for a in args[at + 1:]))
        parse_with_the_tool(tool, args)
    assert (tmp_path / 'deit_t_rope.pth').exists()
