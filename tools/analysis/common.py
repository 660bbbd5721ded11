"""Arguments and output handling shared by the analysis tools."""
import argparse
import os

import matplotlib

matplotlib.use('Agg')


def parser(doc: str) -> argparse.ArgumentParser:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a config whose model.backbone is an mmvitpe backbone')
    p.add_argument('--checkpoint', help='weights (whole model or backbone, any layout)')
    p.add_argument('--images', help='directory of images (default: random noise)')
    p.add_argument('--size', type=int, default=224, help='input side in pixels')
    p.add_argument('--out', default='work_dirs/analysis', help='output directory')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p


def output(args, name: str) -> str:
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)
