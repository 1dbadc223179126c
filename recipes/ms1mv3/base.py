# MS1MV3 (ms1m-retinaface-t1), field values as in arcface_torch's configs/ms1mv3_r50.py.
# Every recipe in this folder is merged over this file (as arcface_torch merges configs/base.py).
from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.network = "r50"
config.resume = False
config.output = None  # each recipe sets its own: work_dirs/ms1mv3/<recipe>
config.embedding_size = 512
config.sample_rate = 1.0
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 128
config.lr = 0.1
config.verbose = 2000
config.frequent = 10
config.dali = False
config.seed = 2048
config.num_workers = 2

config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.num_epoch = 20
config.warmup_epoch = 0
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]

# insightface-lr: the LR student, its training resolution and the HR teacher every method distils from
config.teacher = "work_dirs/ms1mv3/teacher_r50/student.pt"  # teacher_r50.py writes it (a backbone.pth works)
config.lr_sizes = (16,)
config.val_sizes = (32, 24, 16, 12, 8)
config.degrade = {"sizes": (16,), "down_kernel": "bicubic"}
