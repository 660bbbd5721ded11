"""Write the built-in demo data: a tiny, deterministic dataset in real COCO
instance format and in real ADE20K layout, from the same synthetic scenes.

Each scene is a textured background with 1-3 textured shapes (square, circle,
triangle) of random size and position; each class has its own hue (reddish
squares, bluish circles, greenish triangles, jittered) so that a model trained
from scratch for a few CPU minutes can learn it. Written as:

    <out>/coco/{train,val}/<id>.jpg
    <out>/coco/annotations/instances_{train,val}.json   (polygons, bbox, area)
    <out>/ade/images/{training,validation}/<id>.jpg
    <out>/ade/annotations/{training,validation}/<id>.png
        ADE20K convention: 0 = ignore (a 1-pixel band on shape borders),
        1 = background, 2.. = square, circle, triangle (reduce_zero_label=True)

Usage: python tools/make_demo_data.py [--out data/demo] [--train 64] [--val 16] [--size 160]
The same arguments always give byte-identical files.
"""
import argparse
import json
import math
import os

import cv2
import numpy as np

CLASSES = ('square', 'circle', 'triangle')
CLASS_COLOURS = np.array([(220, 60, 60), (60, 110, 230), (70, 200, 80)], dtype=float)
SEG_CLASSES = ('background', ) + CLASSES


def shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices (k, 2) in (x, y) of a shape with circumradius r."""
    count = {'square': 4, 'circle': 32, 'triangle': 3}[kind]
    t = angle + np.arange(count) * 2 * math.pi / count
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def make_scene(rng: np.random.Generator, size: int):
    """An RGB image, its objects [(class index, polygon)] and a label map."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(60, 160, 3) * np.array([0.7, 0.7, 0.7]) + 30  # muted backgrounds
    gradient = (xx * rng.uniform(-0.3, 0.3) + yy * rng.uniform(-0.3, 0.3))[..., None]
    img = base + gradient + rng.normal(0, 12, (size, size, 3))
    labels = np.ones((size, size), np.uint8)  # 1 = background
    objects = []
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(len(CLASSES)))
        r = rng.uniform(0.12, 0.25) * size
        cx, cy = rng.uniform(r, size - r, 2)
        poly = shape_polygon(CLASSES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi))
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        colour = CLASS_COLOURS[cls] + rng.uniform(-35, 35, 3)
        texture = rng.normal(0, 20, (size, size, 3)) + 25 * np.sin(xx / rng.uniform(2, 6))[..., None]
        img = np.where(mask[..., None] == 1, colour + texture, img)
        labels[mask == 1] = 2 + cls
        # later shapes occlude earlier ones: keep only visible polygons' masks
        objects = [(c, p, m & (1 - mask)) for c, p, m in objects] + [(cls, poly, mask)]
    border = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    labels[border] = 0  # ignore band, as ADE20K's unlabeled pixels
    return np.clip(img, 0, 255).astype(np.uint8), objects, labels


def mask_polygons(mask: np.ndarray) -> list:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def write_split(out: str, coco_split: str, ade_split: str, count: int, size: int,
                seed: int) -> None:
    rng = np.random.default_rng(seed)
    for d in (f'coco/{coco_split}', 'coco/annotations', f'ade/images/{ade_split}',
              f'ade/annotations/{ade_split}'):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img, objects, labels = make_scene(rng, size)
        name = f'{i:05d}'
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        cv2.imwrite(os.path.join(out, 'coco', coco_split, name + '.jpg'), bgr,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(os.path.join(out, 'ade/images', ade_split, name + '.jpg'), bgr,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(os.path.join(out, 'ade/annotations', ade_split, name + '.png'), labels)
        images.append(dict(id=i, file_name=name + '.jpg', height=size, width=size))
        for cls, _, mask in objects:
            polygons = mask_polygons(mask)
            if not polygons or mask.sum() < 16:
                continue
            x, y, w, h = cv2.boundingRect(mask)
            annotations.append(dict(id=len(annotations) + 1, image_id=i, category_id=cls + 1,
                                    segmentation=polygons, area=float(mask.sum()),
                                    bbox=[float(x), float(y), float(w), float(h)], iscrowd=0))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)])
    with open(os.path.join(out, 'coco/annotations', f'instances_{coco_split}.json'), 'w') as f:
        json.dump(coco, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo')
    parser.add_argument('--train', type=int, default=64)
    parser.add_argument('--val', type=int, default=16)
    parser.add_argument('--size', type=int, default=160)
    args = parser.parse_args()
    write_split(args.out, 'train', 'training', args.train, args.size, seed=0)
    write_split(args.out, 'val', 'validation', args.val, args.size, seed=1)
    print(f'demo data written to {args.out}: {args.train} train / {args.val} val images '
          f'of {args.size}x{args.size}')


if __name__ == '__main__':
    main()
