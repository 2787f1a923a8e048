"""The pinned dependencies of keras-instance (metadata: pyproject.toml).

Every version here installs beside tensorflow 2.21.0 on Python 3.11; a fresh machine gets these
and nothing newer (`make` installs `.[dev,beam,web]`)."""
from setuptools import setup

setup(
    install_requires=[
        "tensorflow==2.21.0",
        "keras==3.15.1",
        "tensorflow-text==2.21.1",
        "tensorflow-serving-api==2.21.0",
        "gensim==4.4.0",
        "absl-py==2.5.1",
        "tensorboard==2.21.0",
        "numpy==2.4.6",
        "scipy==1.17.1",
        "pillow==12.3.0",  # apache-beam 2.77 (the beam extra) needs pillow < 13
        "protobuf==6.33.6",  # apache-beam 2.77 (the beam extra) needs protobuf < 7
        "grpcio==1.85.3",
        "matplotlib==3.11.2",
        "scikit-learn==1.9.1",
    ],
    extras_require={
        "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0", "execnet==2.1.1", "ruff==0.14.4",
                "selenium==4.51.0"],  # tests/test_web.py drives Chromium via chromium-driver
        "bench": ["faiss-cpu==1.15.1"],
        "beam": ["apache-beam==2.77.0"],  # keras_instance.cli.embed --engine=beam
        "web": ["flask==3.1.3"],  # python -m serving.web, the search page
    },
)
