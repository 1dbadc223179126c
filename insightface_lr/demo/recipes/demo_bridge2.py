# `insightface-lr demo --faces ... --teacher PRETRAINED`, bridge distillation from the pretrained model, step 2: the
# ~0.21M-parameter bridge_student on native 16-px faces, distilled from step 1's bridge, the plain LR fine-tune of
# the pretrained model (demo_finetune.py with distill none). The demo sets teacher (that fine-tune's student.pt),
# seed, rec, output, num_epoch and teacher_cache_dir.
# teacher_view "lr": the frozen bridge embeds the very 16-px face the student sees (once per face and mirror, into
# the teacher cache under a key naming the view: train/teacher_view.py), so every epoch costs the tiny student only.
from easydict import EasyDict as edict

config = edict()
config.teacher_view = "lr"
config.network = "bridge_student"
config.student_input_size = 16
config.embedding_size = 128  # the model zoo's MobileFaceNet is 128-d too: no adaptor between the two
config.lr_sizes = (16,)
config.degrade = {"down_kernel": "bicubic"}
config.distill = "feat"
config.loss = {"feat": {"alpha": 1.0, "metric": "cosine"}}
config.distill_weights = {"feat": 1.0}
config.head_init = "teacher_centres"  # with a margin weight > 0 its head starts in the space feat pulls to
config.margin_list = (1.0, 0.0, 0.2)  # CosFace, small margin: a tiny model from scratch
# pure distillation: chosen on the pilot's val.bin (82.5 vs 81.7 with weight 1); the margin loss on ~100 identities
# fits them (loss ~0.04) and pulls the student away from the bridge (1 - cos 0.50 vs 0.27 on the training faces)
config.margin_weight = 0.0
config.optimizer = "adamw"
config.lr = 0.003
config.weight_decay = 0.05
config.batch_size = 128
config.num_epoch = 30
config.warmup_epoch = 1
config.num_workers = 0  # the demo runs its stages side by side on the cores
config.verbose = 0
config.frequent = 20
config.teacher_cache = True
