# The HR teacher: plain ArcFace training at 112 px (what arcface_torch's r50 recipe does).
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/ms1mv3/teacher_r50"  # its own folder: no two recipes share one
config.network = "r50"
config.distill = "none"
config.teacher = None
config.student_input_size = 112
config.lr_sizes = (112,)
config.degrade = {"sizes": (112,)}
