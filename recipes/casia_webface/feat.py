# LR student (MobileFaceNet on 16-px faces up-sampled to 112) trained with --distill feat.
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/casia_webface/feat"  # its own folder: no two recipes share one
config.network = "mbf"
config.student_input_size = 112
config.distill = "feat"
