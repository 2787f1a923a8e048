"""Request failures as the gRPC status TF Serving would answer, with a one-line message."""
from __future__ import annotations

import re
from typing import Iterable

import grpc


class ServingError(Exception):
    """A request failure with the gRPC status code to answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(message: str) -> ServingError:
    """The request itself is wrong: the user must change it."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def grpc_code(error_code: int) -> grpc.StatusCode:
    """The gRPC status for a TensorFlow error code (TensorFlow's codes are gRPC's, number for
    number)."""
    for code in grpc.StatusCode:
        if code.value[0] == error_code:
            return code
    return grpc.StatusCode.UNKNOWN


def clean_tf_message(message: str) -> str:
    """The part of a TensorFlow error message that says what is wrong, on one line.

    Eager calls wrap a kernel's message in "Graph execution error: Detected at node ... defined
    at (most recent call last): <stack traces>" and append "[Op:__inference_...]"; TF Serving
    answers with the kernel's message and node, which is what this keeps.
    """
    keep, skipping_stack = [], False
    for line in message.splitlines():
        stripped = line.strip()
        if not stripped or stripped == "Graph execution error:":
            continue
        if stripped.startswith("Detected at node"):
            skipping_stack = True
            continue
        if skipping_stack and (stripped.startswith("File ") or stripped.startswith("<stack")
                               or line.startswith("  ")):
            continue
        skipping_stack = False
        keep.append(stripped)
    text = re.sub(r"\s*\[Op:__inference_[^\]]*\]", "", " ".join(keep)).strip()
    return text or message.strip()


def braced(names: Iterable[str]) -> str:
    """`{a, b}`: input/output names in messages, sorted, as TF Serving prints them."""
    return "{" + ", ".join(sorted(names)) + "}"
