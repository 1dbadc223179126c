# `insightface-lr demo`, bridge distillation step 1 (losses/bridge.py): a compact bridge network g on HR faces,
# margin loss + ||g(x_h) - A(F_t(x_h))||^2 against the frozen demo teacher. The paper adapts a private-data
# teacher to a public set; the demo has one set, so this step only distils the teacher into the bridge g
# that step 2 (demo_student.py with distill "bridge") uses as its teacher.
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
config.num_workers = 0
config.verbose = 0
config.frequent = 10
config.distill = "bridge_adapt"
config.loss = {"bridge_adapt": {"weight": 1.0, "seed": 0}}
config.student_input_size = 112
config.lr_sizes = (112,)
config.degrade = {}
