# `insightface-lr demo --faces ... --teacher PRETRAINED`: the students that start from the pretrained teacher.
# Every method (none = the plain low-resolution fine-tune) trains this recipe; the demo sets distill, seed,
# teacher, rec, output, the budget and the term weight chosen on val.bin. The student is a trainable copy of the
# teacher (student_init), seeing the training faces shrunk to the LR sizes and enlarged back to its input.
from easydict import EasyDict as edict

config = edict()
config.student_init = "teacher"
config.margin_list = (1.0, 0.5, 0.0)  # ArcFace s = 64, m = 0.5, as InsightFace's model zoo was trained
config.optimizer = "sgd"
config.lr = 0.01  # a fine-tune: a tenth of arcface_torch's from-scratch 0.1
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 64
config.warmup_epoch = 0
config.num_workers = 0
config.verbose = 0
config.frequent = 10
config.teacher_cache = True
config.degrade = {"down_kernel": "bicubic"}
# every term in units of its first-step value (losses/scale.py): one weight grid reaches every term's scale
config.distill_normalise = True
config.loss = {
    "kd": {"alpha": 1.0, "tau": 4.0},
    "feat": {"alpha": 1.0, "metric": "cosine"},
    "rkd": {"distance_weight": 1.0, "angle_weight": 2.0},
    "aird": {"alpha": 1.0, "beta": 1.0, "lambda_f": 1.0, "lambda_p": 1.0, "tau": 4.0, "tau_r": 0.1, "balance": True},
    "bank": {"memory": 4096, "tau": 0.05, "lambda_f": 1.0, "beta": 1.0, "balance": True},
    "ccface": {"s": 64.0, "m": 0.5, "lambda_acr": 1.0},
}
