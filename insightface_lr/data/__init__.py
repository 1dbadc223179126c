"""Data formats and datasets: MXNet RecordIO (.rec/.idx), InsightFace verification .bin, image codecs.

Deliberately import-light: importing ``insightface_lr.data`` pulls in neither torch nor numpy, so the
RecordIO module can also be loaded in the optional mxnet lane (numpy < 1.24). Import the submodules
directly, e.g. ``from insightface_lr.data.recordio import RecordReader``.
"""

from __future__ import annotations
