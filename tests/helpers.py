"""Helpers shared by the test modules (import them from here, not from conftest)."""
import os

import pytest
import torch


class RunsCode:
    """Unpickling this would run a shell command: used to check refusals."""

    def __reduce__(self):
        return (os.system, ('echo pwned',))


FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def rotate_head_major(pe, q, k, block, state):
    """``pe.rotate`` for q, k given (and returned) as (B, heads, N, head_dim)."""
    qk = pe.rotate(torch.stack([q, k], 2).transpose(1, 3), block, state)
    return qk.transpose(1, 3).unbind(2)


@pytest.fixture(scope='module')
def one_intra_op_thread():
    """For modules of tiny models: a second intra-op thread only adds synchronisation,
    which on a busy 2-core machine made timm's prune tests 50x slower (6.4 s vs 0.13 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed(model):
    """``model`` moved off its neutral init (zero biases, tiny layer scales)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def seg_batch(num_classes: int, size: int = 64, batch: int = 2) -> dict:
    """An mmseg batch as its data preprocessor takes it: uint8 images with random
    label maps of ``num_classes`` classes."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size)))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 255, (3, size, size), dtype=torch.uint8)] * batch,
                data_samples=samples)
