from setuptools import find_packages, setup

setup(
    name='mmvitpe',
    version='0.1.0',
    description='ViT-Adapter backbones with pluggable positional encodings '
    'for mmdet 3.x and mmsegmentation 1.x',
    packages=find_packages(include=['mmvitpe', 'mmvitpe.*']),
    package_data={'mmvitpe.ops': ['csrc/*.cpp']},  # compiled on first use
    python_requires='>=3.9',
    install_requires=['torch', 'timm', 'mmengine>=0.10,<1.0'],
)
