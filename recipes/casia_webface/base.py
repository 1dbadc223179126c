# CASIA-WebFace as insightface packs it (faces_webface_112x112: 10,572 identities, 490,623 images;
# `insightface-lr info` prints the numbers of your copy). Field names and values follow arcface_torch.
from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.network = "r50"
config.resume = False
config.output = None  # each recipe sets its own: work_dirs/casia_webface/<recipe>
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

config.rec = "/train_tmp/faces_webface_112x112"
config.num_classes = 10572
config.num_image = 490623
config.num_epoch = 34
config.warmup_epoch = 0
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]

config.teacher = "work_dirs/casia_webface/teacher_r50/student.pt"  # teacher_r50.py writes it (a backbone.pth works)
config.lr_sizes = (16,)
config.val_sizes = (32, 24, 16, 12, 8)
config.degrade = {"sizes": (16,), "down_kernel": "bicubic"}
