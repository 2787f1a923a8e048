"""keras-instance: Dual-Path Convolutional Image-Text Embeddings with Instance Loss in Keras 3."""
from setuptools import find_packages, setup

setup(
    name="keras-instance",
    version="0.1.0",
    description=("Dual-path CNN image-text embeddings with instance loss "
                 "(Zheng et al., arXiv 1711.05535) for TensorFlow/Keras 3"),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_instance", "keras_instance.*"]),
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
