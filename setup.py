import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def requirements(name: str) -> list:
    """The requirement lines of requirements/<name>.txt (comments and blanks skipped)."""
    with open(os.path.join(HERE, 'requirements', name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


setup(
    name='mmvitpe',
    version='0.1.0',
    description='Plain-ViT dense backbones with pluggable positional encodings '
    'for mmdet 3.x and mmsegmentation 1.x',
    packages=find_packages(include=['mmvitpe', 'mmvitpe.*']),
    package_data={'mmvitpe.ops': ['csrc/*.cpp']},  # compiled on first use
    # 3.10: the oldest grammar the sources use (tests/test_min_versions.py parses them)
    python_requires='>=3.10',
    install_requires=requirements('core.txt'),
    # OpenMMLab's convention (mmdet's 'mim' extra): mmcv is built or installed apart
    extras_require={'mim': requirements('mminstall.txt'),
                    'export': requirements('export.txt'),
                    'tests': requirements('tests.txt')},
)
