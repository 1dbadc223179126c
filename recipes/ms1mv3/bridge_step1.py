# Bridge distillation, step 1 (cross-dataset): a compact bridge embedding g on top of the frozen
# teacher is trained on this public set: ||g(x_h) - A(F_t(x_h))||^2 + margin loss (losses/bridge.py).
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/ms1mv3/bridge_step1"  # its own folder: no two recipes share one
config.network = "mbf"
config.student_input_size = 112
config.embedding_size = 128
config.lr_sizes = (112,)
config.degrade = {"sizes": (112,)}
config.distill = "bridge_adapt"
