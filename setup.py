import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# the version lives in one place, the package (``insightface_lr.__version__``, ``insightface-lr --version``)
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "insightface_lr" / "__init__.py").read_text(encoding="utf-8"),
                    re.MULTILINE).group(1)

setup(
    name="insightface-lr",
    version=VERSION,
    description="Low-resolution face recognition by distillation for InsightFace's ArcFace pipeline",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["insightface_lr", "insightface_lr.*"]),
    # the demo's recipes are read at run time: they ship inside the package, so the wheel runs the main job
    package_data={"insightface_lr": ["py.typed", "demo/recipes/*.py"]},
    install_requires=[
        # torch is pinned in the README's install command (an unpinned torch pulls GBs of CUDA wheels)
        "torch>=2.1",
        "numpy>=1.23",
        "scikit-image>=0.21",
        "pillow>=9",
        "insightface>=0.7",
        "onnx>=1.14",
        "onnxruntime>=1.16",
        "tqdm>=4.60",
        "tensorboard>=2.12",
        "matplotlib>=3.6",
        # MATLAB .mat label files of TinyFace and QMUL-SurvFace (eval --protocol); scikit-image needs it anyway
        "scipy>=1.8",
    ],
    extras_require={
        # mxnet 1.9.1 is dead upstream and breaks on numpy >= 1.24: only ever optional, in its own venv
        "mxnet": ["mxnet==1.9.1", "numpy<1.24"],
        "onnx": ["onnx>=1.14", "onnxruntime>=1.16"],
        # pdoc: the API reference (scripts/build_api_docs.py), built and checked by the default test suite
        "docs": ["pdoc>=14"],
        "test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "ruff>=0.4", "pdoc>=14"],
    },
    entry_points={"console_scripts": ["insightface-lr=insightface_lr.cli:main"]},
)
