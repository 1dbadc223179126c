# LR student (MobileFaceNet on 16-px faces up-sampled to 112) trained with --distill ccface.
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/casia_webface/ccface"  # its own folder: no two recipes share one
config.network = "mbf"
config.student_input_size = 112
config.distill = "ccface"
config.loss = {"ccface": {"s": 64.0, "m": 0.5, "margin_rule": "teacher", "lambda_acr": 1.0}}
