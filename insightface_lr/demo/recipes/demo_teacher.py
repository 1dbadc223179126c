# `insightface-lr demo`, step 2: the HR teacher on the synthetic training identities (112 px input).
# demo_hr_net is a small dense network registered by the demo's plugin module (insightface_lr/demo/nets.py):
# IResNet-18 and MobileFaceNet train at a few faces/s on 2 CPU cores. The demo sets rec, output, seed and
# num_epoch (quick or full) on top of these fields.
from easydict import EasyDict as edict

config = edict()
config.network = "demo_hr_net"
config.plugins = ["insightface_lr.demo.nets"]
config.embedding_size = 128
config.margin_list = (1.0, 0.0, 0.2)  # CosFace, small margin: converges in a few hundred CPU steps
config.optimizer = "adamw"  # measured: SGD 0.1 barely leaves chance level within the demo's budget
config.lr = 0.003
config.weight_decay = 0.05
config.batch_size = 64
config.warmup_epoch = 1
config.num_workers = 0  # decoding 112-px JPEGs is cheap; worker processes would fight for the 2 cores
config.verbose = 0  # the demo evaluates after training
config.frequent = 10
config.distill = "none"
config.student_input_size = 112
config.lr_sizes = (112,)  # the HR view itself: no degradation
config.degrade = {}
