"""The main job: synthetic data -> HR teacher -> LR students (all methods) -> report (``insightface-lr demo``)."""
