# `insightface-lr demo`, step 3: the LR students. Every method trains this same recipe; the demo sets
# distill (none, kd, feat, rkd, aird, ccface, bridge), teacher, the LR size (16 or 12: the student's native
# input, lr_sizes and degrade sizes), seed, rec, output and max_steps. Loss fields: METHODS.md defaults.
from easydict import EasyDict as edict

config = edict()
config.network = "bridge_student"  # ~0.21M parameters on native 16/12-px faces, for every method
config.embedding_size = 128  # = the demo teacher's: feature terms need no adaptor
config.margin_list = (1.0, 0.0, 0.2)  # CosFace, small margin: converges in a few hundred CPU steps
config.optimizer = "adamw"  # measured: SGD 0.1 barely leaves chance level within the demo's budget
config.lr = 0.003
config.weight_decay = 0.05
config.batch_size = 64
config.warmup_epoch = 0
config.num_workers = 0
config.verbose = 0
config.frequent = 10
config.teacher_cache = True  # one teacher cache for all students (the demo links it into each run)
config.degrade = {"down_kernel": "bicubic"}
config.loss = {
    "kd": {"alpha": 1.0, "tau": 4.0},
    "feat": {"alpha": 1.0, "metric": "cosine"},
    "rkd": {"distance_weight": 1.0, "angle_weight": 2.0},
    "aird": {"alpha": 1.0, "beta": 1.0, "lambda_f": 1.0, "lambda_p": 1.0, "tau": 4.0, "tau_r": 0.1},
    "bank": {"memory": 4096, "tau": 0.05, "lambda_f": 1.0, "beta": 1.0, "balance": False},
    "ccface": {"s": 64.0, "m": 0.5, "lambda_acr": 1.0},
    "bridge": {"lambda_l2": 1.0},
}
