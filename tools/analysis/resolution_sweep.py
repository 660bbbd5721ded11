"""Resolution sweep: how a backbone's output moves as the input size moves away
from the pretraining size, per PE scheme.

    python tools/analysis/resolution_sweep.py CONFIG [--checkpoint CKPT]
        [--schemes LearnedPE RoPEMixed ...] [--sizes 160 224 320 448] [--reference 224]

For each scheme the config's backbone is built with that scheme (weights from
the checkpoint where they fit); each output level at every size is resized to
the reference-size output and compared by cosine similarity. Writes
resolution_sweep.csv (scheme, size, level, cosine) and resolution_sweep.png.
With a dataset, the metric itself is measured by tools/test.py with
--cfg-options changing the test resize.
"""
import matplotlib.pyplot as plt
from common import load_backbone, load_images, output, parser, save_figure
from mmengine.utils import ProgressBar

import mmvitpe  # noqa: F401
from mmvitpe.analysis import resolution_sweep
from mmvitpe.utils.tables import write_csv


def main() -> None:
    p = parser(__doc__)
    p.add_argument('--schemes', nargs='+', default=['LearnedPE', 'SinCosPE', 'RoPEMixed', 'SPSA'])
    p.add_argument('--sizes', nargs='+', type=int, default=[160, 224, 320, 448])
    p.add_argument('--reference', type=int, default=224)
    args = p.parse_args()
    img = load_images(args, args.reference, count=2)
    rows = []
    progress = ProgressBar(len(args.schemes))
    for scheme in args.schemes:
        model = load_backbone(args.config, args.checkpoint, args.cfg_options,
                                     pos_embed=dict(type=scheme))
        rows += [dict(scheme=scheme, **r)
                 for r in resolution_sweep(model, img, args.sizes, args.reference)]
        progress.update()
    write_csv(rows, output(args, 'resolution_sweep.csv'))
    fig, ax = plt.subplots(figsize=(6, 4))
    for scheme in args.schemes:
        mean = {s: sum(r['cosine'] for r in rows if r['scheme'] == scheme and r['size'] == s)
                / sum(1 for r in rows if r['scheme'] == scheme and r['size'] == s)
                for s in args.sizes}
        ax.plot(list(mean), list(mean.values()), marker='o', label=scheme)
    ax.axvline(args.reference, color='grey', ls='--')
    ax.set(xlabel='input side (px)', ylabel='cosine similarity to reference output',
           title='Resolution sweep (mean over output levels)')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, output(args, 'resolution_sweep.png'), dpi=100)
    print(f'\nwrote {output(args, "resolution_sweep.csv")}')


if __name__ == '__main__':
    main()
