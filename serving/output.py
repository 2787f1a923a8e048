"""What the client prints: Predict outputs, search hits (as text or JSON), model status and
signatures. No RPCs here, no TensorFlow."""
from __future__ import annotations

import json
from typing import Mapping

import grpc
import numpy as np

from serving import tensors


def _decode(value) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return repr(value)
    if isinstance(value, (float, np.floating)):
        return f"{value:.6f}"
    return str(value)


def _format_array(array: np.ndarray) -> str:
    if array.dtype == object:
        return str(np.vectorize(_decode, otypes=[object])(array).tolist()) if array.size else "[]"
    return np.array2string(array, precision=6, threshold=1000, max_line_width=100)


def format_outputs(outputs: Mapping[str, np.ndarray], queries: list[str] | None = None,
                   full: bool = False, preview: int = 8) -> str:
    """Every output tensor as text. Outputs sharing one [queries, k] shape (top-k ids, texts,
    scores) become a ranked table per query; a float [queries, D] tensor an embedding summary
    (all values when `full`); anything else its values, strings decoded."""
    lines = []
    names = sorted(outputs)
    by_shape: dict[tuple, list[str]] = {}
    for name in names:
        by_shape.setdefault(outputs[name].shape, []).append(name)
    tabled = set()
    for shape, group in by_shape.items():
        if len(shape) == 2 and len(group) >= 2:
            tabled.update(group)
            lines.append(f"{', '.join(group)}: top-{shape[1]} for {shape[0]} quer"
                         f"{'y' if shape[0] == 1 else 'ies'}")
            for row in range(shape[0]):
                label = queries[row] if queries and row < len(queries) else f"query {row}"
                lines.append(f"  [{row}] {label}")
                lines.append("    rank  " + "  ".join(group))
                for k in range(shape[1]):
                    cells = "  ".join(_decode(outputs[name][row, k]) for name in group)
                    lines.append(f"    {k + 1:4d}  {cells}")
    for name in names:
        if name in tabled:
            continue
        array = outputs[name]
        header = f"{name}: {array.dtype.name if array.dtype != object else 'string'} " \
                 f"{list(array.shape)}"
        lines.append(header)
        if array.ndim == 2 and array.dtype.kind == "f":  # one embedding per query
            for row in range(array.shape[0]):
                label = queries[row] if queries and row < len(queries) else f"query {row}"
                vec = array[row]
                lines.append(f"  [{row}] {label}  L2 norm {np.linalg.norm(vec):.6f}")
                if full or vec.size <= preview:
                    values = np.array2string(vec, precision=6, threshold=vec.size + 1,
                                             max_line_width=100)
                    lines.append("    " + values.replace("\n", "\n    "))
                else:
                    head = ", ".join(f"{v:.4f}" for v in vec[:preview])
                    lines.append(f"    [{head}, ...] (first {preview} of {vec.size}; "
                                 f"--embed for all)")
        else:
            lines.append("  " + _format_array(array).replace("\n", "\n  "))
    return "\n".join(lines)


# --------------------------------------------------------------------------- status, metadata

def _code_name(code: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), f"code {code}")


def format_status(model: str, statuses: list[dict]) -> str:
    """GetModelStatus as text: one line per version, with its state and any load error."""
    lines = [f"model {model}: status"]
    for s in statuses:
        line = f"  version {s['version']}: {s['state']}"
        if s["error_code"]:
            line += f" ({_code_name(s['error_code'])}: {s['error_message']})"
        lines.append(line)
    return "\n".join(lines)


def _shape(shape) -> str:
    if shape.unknown_rank:
        return "[unknown rank]"
    return "[" + ", ".join("None" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def format_metadata(model: str, version: int, signatures: Mapping) -> str:
    """The signatures of GetModelMetadata as text: each input and output, dtype and shape
    (None: any size). The SavedModel's internal `__saved_model_init_op` is left out."""
    lines = [f"model {model} version {version}: signatures"]
    for key in sorted(k for k in signatures if not k.startswith("__saved_model")):
        sig = signatures[key]
        lines.append(f"  {key} ({sig.method_name or 'no method name'})")
        for kind, infos in (("input ", sig.inputs), ("output", sig.outputs)):
            for name in sorted(infos):
                info = infos[name]
                lines.append(f"    {kind} {name}: {tensors.dtype_name(info.dtype)} "
                             f"{_shape(info.tensor_shape)}")
    return "\n".join(lines)



# --------------------------------------------------------------------------- search hits

def _cell(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def format_search(result) -> str:
    """A `query.SearchResult` as text: per query, one line per hit (rank, score, id, and the
    path, caption and tags columns that any hit has), padding already left out."""
    lines = [f"model {result.model} version {result.version} signature {result.signature} "
             f"({result.elapsed_ms:.1f} ms round trip)"]
    for row, (label, hits) in enumerate(zip(result.queries, result.hits)):
        lines.append(f"[{row}] {label}: {len(hits)} hit{'' if len(hits) == 1 else 's'} "
                     f"(k {result.k})")
        if not hits:
            lines.append("    no gallery item matches the restriction")
            continue
        fields = [f for f in ("path", "caption", "tags") if any(getattr(h, f) for h in hits)]
        table = [["rank", "score", "id", *fields]]
        for rank, hit in enumerate(hits, start=1):
            meta = {"path": _cell(hit.path), "caption": _cell(hit.caption),
                    "tags": ",".join(hit.tags)}
            table.append([str(rank), f"{hit.score:.6f}", hit.id,
                          *[meta[f] or "-" for f in fields]])
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            cells = [r[0].rjust(widths[0]), *(c.ljust(w) for c, w in zip(r[1:], widths[1:]))]
            lines.append("    " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _json_value(array: np.ndarray):
    if array.dtype == object:
        return np.vectorize(_decode, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def outputs_json(outputs: Mapping[str, np.ndarray], queries: list[str], model: str,
                 version: int, signature: str, elapsed_ms: float) -> dict:
    """A Predict answer for `--json`: top-k outputs (ids and scores [N, k]) as hits per query,
    as `SearchResult.as_dict` gives them; any other answer as its outputs, strings decoded."""
    from serving.query import hits_from_outputs
    head = {"model": model, "version": version, "signature": signature,
            "elapsed_ms": round(elapsed_ms, 3)}
    ids, scores = outputs.get("ids"), outputs.get("scores")
    if ids is not None and scores is not None and ids.ndim == 2 and ids.shape == scores.shape:
        hits = hits_from_outputs(dict(outputs))
        head["k"] = int(ids.shape[1])
        head["queries"] = [{"query": label, "hits": [h.as_dict(rank) for rank, h in
                                                     enumerate(row, start=1)]}
                           for label, row in zip(queries, hits)]
        return head
    head["queries"] = list(queries)
    head["outputs"] = {name: _json_value(outputs[name]) for name in sorted(outputs)}
    return head


def to_json(document: dict) -> str:
    """JSON text for programs; non-finite floats as JSON's usual NaN / Infinity extension (as
    TF Serving's REST answers write them)."""
    return json.dumps(document, ensure_ascii=False, indent=1)
