"""Parameters and FLOPs per PE scheme and preset (torch's FlopCounterMode,
which also counts scaled_dot_product_attention).

    python tools/analysis/complexity.py CONFIG [--presets tiny small base]
        [--schemes ...] [--size 512]

Writes complexity.csv (preset, scheme, params, pe_params, gflops) and complexity.png.
"""
import matplotlib.pyplot as plt
import torch
from common import load_backbone, output, parser, save_figure
from mmengine.utils import ProgressBar

import mmvitpe  # noqa: F401
from mmvitpe.analysis import complexity
from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.tables import write_csv


def main() -> None:
    p = parser(__doc__)
    p.add_argument('--presets', nargs='+', default=['tiny'])
    p.add_argument('--schemes', nargs='+', default=sorted(POS_ENCODINGS.module_dict))
    args = p.parse_args()
    img = torch.randn(1, 3, args.size, args.size)
    rows = []
    progress = ProgressBar(len(args.presets) * len(args.schemes))
    for preset in args.presets:
        for scheme in args.schemes:
            options = dict(args.cfg_options or {}, **{'model.backbone.preset': preset})
            model = load_backbone(args.config, None, options, pos_embed=dict(type=scheme))
            rows.append(dict(preset=preset, scheme=scheme, **complexity(model, img)))
            progress.update()
    write_csv(rows, output(args, 'complexity.csv'))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    labels = [f"{r['preset']}\n{r['scheme']}" for r in rows]
    ax.bar(range(len(rows)), [r['gflops'] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
    ax.set(ylabel=f'GFLOPs at {args.size}x{args.size}', title='Forward FLOPs per scheme')
    fig.tight_layout()
    save_figure(fig, output(args, 'complexity.png'), dpi=100)
    print('\n| preset | scheme | params (M) | PE params | GFLOPs |')
    print('|---|---|---:|---:|---:|')
    for r in rows:
        print(f"| {r['preset']} | {r['scheme']} | {r['params'] / 1e6:.2f} | {r['pe_params']} | "
              f"{r['gflops']:.1f} |")


if __name__ == '__main__':
    main()
