# The PE-comparison demo of fcn_vit-baseline-p8_position_demo.py with another
# adapter protocol: DEIMv2's spatial tuning adapter (STA) on the same 4-block ViT
# (taps after blocks 1, 2, 3, a stem of width 8), for studies of schemes x protocols:
#   python tools/compare_pe.py configs/demo/fcn_vit-baseline-p8_position_demo.py \
#       configs/demo/fcn_sta-p8_position_demo.py --schemes NoPE LearnedPE --seeds 0 1
# Unlike the plain ViT's pyramid, the stem's zero-padded convs see the image borders:
# a model without PE can learn some position from them.
_base_ = './fcn_vit-baseline-p8_position_demo.py'

model = dict(
    backbone=dict(
        _delete_=True, type='mmvitpe.STA', arch=dict(embed_dim=96, depth=4, num_heads=3),
        patch_size=8, pretrain_size=64, pos_embed=dict(type='LearnedPE'), class_token=False,
        interaction_indexes=[1, 2, 3], conv_inplane=8, norm_cfg={{_base_.norm_cfg}}))
