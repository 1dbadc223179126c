# Bridge distillation, step 2 (resolution-adapted, multi-task): the ~0.21M-parameter student on 16-px
# faces learns margin loss + lambda * ||F_s(x_l) - g(x_h)||^2, with step 1's bridge model as teacher.
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/ms1mv3/bridge_step2"  # its own folder: no two recipes share one
config.network = "bridge_student"
config.student_input_size = 16
config.embedding_size = 128
config.distill = "bridge"
config.teacher = "work_dirs/ms1mv3/bridge_step1/student.pt"  # what bridge_step1.py writes
