"""Build and install musicrep: the Python packages and the native module musicrep._C.

CMakeLists.txt is the one native build definition; this file only drives it. PyTorch must
already be installed (install with ``--no-build-isolation`` so the build sees it):
musicrep builds against the torch it will run with.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def read_version() -> str:
    text = (ROOT / "core" / "_version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configure and build CMakeLists.txt, placing the module where setuptools expects it."""

    def build_extension(self, ext: Extension) -> None:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("musicrep: install PyTorch first (pip install torch), then install musicrep "
                     "with --no-build-isolation so the build uses that torch")
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # MUSICREP_BUILD_DIR keeps a variant build (make asan-test) out of the normal CMake cache
        build_dir = Path(os.environ.get("MUSICREP_BUILD_DIR") or Path(self.build_temp) / "cmake").resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = ["cmake", str(ROOT), f"-DPython_EXECUTABLE={sys.executable}",
               f"-DMUSICREP_OUTPUT_DIR={out_dir}",
               f"-DCMAKE_BUILD_TYPE={os.environ.get('MUSICREP_BUILD_TYPE', 'Release')}"]
        if "MUSICREP_CUDA" in os.environ:
            cfg.append(f"-DMUSICREP_CUDA={os.environ['MUSICREP_CUDA']}")
        if "MUSICREP_NATIVE" in os.environ:
            cfg.append(f"-DMUSICREP_NATIVE={os.environ['MUSICREP_NATIVE']}")
        if "MUSICREP_SANITIZE" in os.environ:  # ON: AddressSanitizer + UBSan (make asan-test)
            cfg.append(f"-DMUSICREP_SANITIZE={os.environ['MUSICREP_SANITIZE']}")
        if "MUSICREP_CMAKE_ARGS" in os.environ:
            cfg.extend(os.environ["MUSICREP_CMAKE_ARGS"].split())
        jobs = os.environ.get("MUSICREP_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.run(cfg, cwd=build_dir, check=True)
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_dir, check=True)


def packages() -> tuple[list[str], dict[str, str]]:
    """`core/` is importable as `musicrep` and `plugins/` as `musicrep.plugins`."""
    pkgs = ["musicrep"] + [f"musicrep.{p}" for p in find_packages("core")]
    pkgs += ["musicrep.plugins"] + [f"musicrep.plugins.{p}" for p in find_packages("plugins")]
    return pkgs, {"musicrep": "core", "musicrep.plugins": "plugins"}


PACKAGES, PACKAGE_DIR = packages()

setup(
    name="musicrep",
    version=read_version(),
    description="Learn and evaluate audio representations for music understanding",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"musicrep": ["plots.mplstyle"]},  # the report figures' style
    ext_modules=[CMakeExtension("musicrep._C")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        "torch>=2.3",
        "numpy>=1.24",
        "pluggy>=1.3",
        "h5py>=3.8",
        "scikit-learn>=1.3",
        "numba>=0.58",
        "nnAudio>=0.3.2",
        "soundfile>=0.12",
        "soxr>=0.3",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "safetensors>=0.4",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-benchmark>=4", "hypothesis>=6", "librosa>=0.10",
                 "mule-torch==0.2.0", "onnx>=1.16", "onnxscript>=0.5", "onnxruntime>=1.20"],
        # Hugging Face audio models from a local folder (musicrep.plugins.hf); transformers asks no torch of its own
        "hf": ["transformers>=4.40"],
    },
    entry_points={
        "console_scripts": ["musicrep = musicrep.cli:main"],
        "musicrep.plugins": [
            f"{group} = musicrep.plugins.{group}"
            for group in ("frontends", "augmentations", "encoders", "objectives", "probes", "tasks", "logging",
                          "sfnfnet", "hear", "mule", "band_cnn", "hf")
        ],
    },
    zip_safe=False,
)
