# LR student (MobileFaceNet on 16-px faces up-sampled to 112) trained with --distill kd.
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/ms1mv3/kd"  # its own folder: no two recipes share one
config.network = "mbf"
config.student_input_size = 112
config.distill = "kd"
