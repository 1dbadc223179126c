# LR student (MobileFaceNet on 16-px faces up-sampled to 112) trained with --distill aird.
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/casia_webface/aird"  # its own folder: no two recipes share one
config.network = "mbf"
config.student_input_size = 112
config.distill = "aird"
# METHODS.md defaults, written out so they are easy to change
config.loss = {"aird": {"alpha": 1.0, "beta": 1.0, "lambda_f": 1.0, "lambda_p": 1.0, "tau": 4.0, "tau_r": 0.1}}
config.facebn = "batch"
