"""A stand-in for TF Serving's model server, for machines where tensorflow/serving cannot run.

    python -m serving.standin --model_config exports/models.config --port 8500 [--rest_port 8501]

Production runs tensorflow/serving; what the stand-in does and lacks: serving/README.md.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet C++ logs

from serving.standin.quiet_tensorflow import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # before main imports it: no cuInit E-line, no start-up noise

from serving.standin.main import run  # noqa: E402

if __name__ == "__main__":
    run()
