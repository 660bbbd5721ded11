"""NonFiniteCheckHook in a real mmengine Runner: it stops at the first NaN image
before the model's BatchNorm statistics see it, and at the first non-finite loss,
naming the iteration and the samples' files."""
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from torch import nn
from torch.utils.data import Dataset

from mmvitpe.engine import NonFiniteError


class Images(Dataset):
    """Eight float images (as ``to_float32`` or a TIFF gives); one may be bad."""

    def __init__(self, bad_index=None, bad_value=float('nan')):
        self.bad_index, self.bad_value = bad_index, bad_value

    def __len__(self):
        return 8

    def __getitem__(self, i):
        img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i))
        if i == self.bad_index:
            img[0, 2, 3] = self.bad_value
        return dict(inputs=img, data_samples=BaseDataElement(metainfo=dict(img_path=f'{i}.tif')))


class ConvBN(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, inputs, data_samples=None, mode='loss'):
        features = self.conv(torch.stack(inputs))
        return dict(loss=self.bn(features).square().mean() + 1e-3 * features.square().mean())


def train(tmp_path, dataset, check: bool, model=None) -> ConvBN:
    model = model or ConvBN()
    runner = Runner(
        model=model, work_dir=str(tmp_path), train_cfg=dict(by_epoch=False, max_iters=4),
        train_dataloader=dict(dataset=dataset, batch_size=2, collate_fn=dict(type='pseudo_collate'),
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type='mmvitpe.NonFiniteCheckHook')] if check else None)
    runner.train()
    return model


def test_without_the_check_one_nan_pixel_spoils_the_batchnorm_statistics(tmp_path):
    model = train(tmp_path, Images(bad_index=5), check=False)
    assert torch.isnan(model.bn.running_mean).all()  # for good: what the hook prevents


def test_a_nan_pixel_stops_training_before_the_model_naming_the_file(tmp_path):
    model = ConvBN()
    with pytest.raises(NonFiniteError, match=r"iteration 3: NaN or infinite pixels in the "
                                             r"training images \['5.tif'\]; training stopped "
                                             'before they reached the model'):
        train(tmp_path, Images(bad_index=5), check=True, model=model)
    assert torch.isfinite(model.bn.running_mean).all()


def test_a_non_finite_loss_stops_training_naming_the_batch(tmp_path):
    # finite pixels whose squares overflow float32: the loss is inf at iteration 2
    with pytest.raises(NonFiniteError, match=r"iteration 2: the loss is (inf|nan) on the batch "
                                             r"of \['2.tif', '3.tif'\]; training stopped"):
        train(tmp_path, Images(bad_index=3, bad_value=3e38), check=True)
