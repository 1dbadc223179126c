# Fine-tune a pretrained InsightFace recogniser for low-resolution faces, optionally distilling from itself.
#   insightface-lr train recipes/pretrained/finetune_lr.py --rec DATA --output OUT \
#       --teacher .../insightface_mobilefacenet_y1/model [--distill aird]
# The teacher is the pretrained model as it is (frozen, on the HR face); the student starts as a trainable copy of
# it (student_init, its network, 112-px input and embedding size) and sees the same faces shrunk to 12-20 px and
# enlarged back, as evaluation shows them. The margin head starts from the teacher's class centres on the
# training identities, so the first steps refine a classifier that already works instead of a random one.
from easydict import EasyDict as edict

config = edict()
config.output = "work_dirs/pretrained/finetune_lr"  # its own folder: no two recipes share one
# your aligned faces as train.rec/.idx (`insightface-lr pack FOLDER`); num_classes 0: read from its property file
config.rec = "/train_tmp/faces"
config.num_classes = 0
config.teacher = "models/insightface_mobilefacenet/model"  # a model-zoo prefix (or backbone.pth, student.pt)
config.student_init = "teacher"
config.margin_list = (1.0, 0.5, 0.0)  # ArcFace s = 64, m = 0.5: what InsightFace's model zoo was trained with
config.optimizer = "sgd"
config.lr = 0.01  # a fine-tune: a tenth of arcface_torch's from-scratch 0.1
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 64
config.num_epoch = 2
config.warmup_epoch = 0
config.lr_sizes = (12, 14, 16, 18, 20)  # one per batch, seeded
config.degrade = {"down_kernel": "bicubic"}
config.num_workers = 2
config.verbose = 0
config.frequent = 10
config.teacher_cache = True
# distillation terms in units of their first-step value (losses/scale.py): from a pretrained start their raw
# scales differ ~1000x (scale-64 KD ~100, an embedding cosine ~0.3), so one weight grid serves every method
config.distill_normalise = True
config.loss = {
    "kd": {"alpha": 1.0, "tau": 4.0},
    "feat": {"alpha": 1.0, "metric": "cosine"},
    "rkd": {"distance_weight": 1.0, "angle_weight": 2.0},
    "aird": {"alpha": 1.0, "beta": 1.0, "lambda_f": 1.0, "lambda_p": 1.0, "tau": 4.0, "tau_r": 0.1, "balance": True},
    "bank": {"memory": 4096, "tau": 0.05, "lambda_f": 1.0, "beta": 1.0, "balance": True},
    "ccface": {"s": 64.0, "m": 0.5, "lambda_acr": 1.0},
}
