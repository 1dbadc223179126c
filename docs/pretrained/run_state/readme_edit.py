"""One-off: the README's pretrained section gets the finished comparison's rendered tables (run, then render)."""
from pathlib import Path

p = Path("/work/main/README.md")
s = p.read_text()
start = s.index("Measured with InsightFace's model-zoo MobileFaceNet")
end_marker = "Its tables replace this one when its run finishes.\n"
end = s.index(end_marker) + len(end_marker)
new = """Measured with InsightFace's model-zoo MobileFaceNet (ArcFace, MS1M) and the real faces below:
`demo --faces train/ --test-bin dev.bin --teacher MODEL`, the `pretrained` preset
([docs/pretrained.md](docs/pretrained.md)): every student the recipe's 2 epochs on the 110 training identities,
seeds 0, 1 and 2; four candidates per distilling method (AIRD's parts among them) chosen on the 27 `val.bin`
identities; reported on `dev.bin` (40 people in neither training file). From `docs/pretrained/summary.json`
(report: [docs/pretrained/report.md](docs/pretrained/report.md)):

<!-- table:pretrained_verdict -->
<!-- /table:pretrained_verdict -->

Each method - `none` (the plain low-resolution fine-tune) over the same seeds and pairs, with its 95 % interval
([docs/evaluation.md](docs/evaluation.md); VAL@FAR=1e-3 on
1,200 pairs is the weaker evidence); **better** or **worse** only when the interval excludes 0:

<!-- table:pretrained_paired -->
<!-- /table:pretrained_paired -->

Every size (accuracy on `dev.bin`, mean over seeds) and each student's 112-px change against the teacher as it is:
does the low-resolution fine-tune forget HR faces, and does distilling keep them?

<!-- table:pretrained_sizes -->
<!-- /table:pretrained_sizes -->

At 16 px, mean ± std over seeds, the candidate chosen on `val.bin`, and FaceBN (the AIRD paper's second step):

<!-- table:pretrained -->
<!-- /table:pretrained -->

<!-- table:pretrained_small -->
<!-- /table:pretrained_small -->

<!-- table:pretrained_time -->
<!-- /table:pretrained_time -->
"""
s = s[:start] + new + s[end:]
p.write_text(s)
print("README pretrained section replaced")
