"""Wire formats <-> arrays, apart from any model logic.

Every request is turned into ``Ragged`` windows (one flat int64 code array plus offsets)
before the core sees it, and every answer is built from the core's ``ModelScores``
arrays. The codecs here know the formats; they know nothing about models:

- JSON (the default), for the seeds' ``/infer`` and ``/infer_batch``: windows as lists of
  integer event codes; answers with one array per model.
- Arrow IPC stream (``application/vnd.apache.arrow.stream``) for ``/infer_batch``: a
  ``windows`` column of ``list<integer>``; the answer, when negotiated, is one record
  batch with a ``<model key>/probability`` (float64) and ``<model key>/y_pred`` (int8)
  column per model, nulls where the output was not finite, and the models' identities and
  errors as JSON in the schema metadata key ``models``. No per-window Python objects on
  either side: the cheap path for a client that already holds Arrow (the replay does).
  pyarrow is an optional extra (``runtime.optional``): without it these bodies answer 501.
- Open Inference Protocol V2 tensors: input ``events`` INT64 ``[n, L]``, each row a
  window's codes followed by ``-1`` padding; as JSON ``data`` (flat or nested) or as raw
  little-endian bytes (the protocol's binary tensor extension, which ``tritonclient``
  uses by default).

JSON nested deeper than the interpreter can parse is a 400, never a 500.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from runtime import optional
from runtime.errors import BadRequest, PayloadTooLarge
from runtime.vectorize import Ragged

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
OCTET = "application/octet-stream"
OIP_HEADER_LENGTH = "Inference-Header-Content-Length"
PADDING = -1  # OIP rows end with -1s after the window's last code
_INT64 = np.iinfo(np.int64)


def dumps(body) -> bytes:
    """The one JSON form of answers: compact, and never NaN (it is not JSON)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_json(body: bytes, fix: str):
    """Parse a request body; ``fix`` tells the client what to send instead."""
    try:
        return json.loads(body)
    except RecursionError:
        raise BadRequest(f"the body nests JSON arrays or objects too deeply to parse; {fix}") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest(f"the body is not valid JSON ({error}); {fix}") from None


def json_object(body: bytes, fix: str) -> dict:
    data = decode_json(body, fix)
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(data).__name__}; {fix}")
    return data


def check_batch_size(n: int, limit: int) -> None:
    if n > limit:
        raise PayloadTooLarge(f"the batch has {n} windows, more than the server's limit of "
                              f"{limit}; send smaller batches (GET /models gives the limits)")


# ------------------------------------------------------------------ JSON windows

def _first_bad_code(windows: list, where) -> str:
    """Describe the first element that is not an int64 event code (the slow path, errors only)."""
    for i, window in enumerate(windows):
        for j, code in enumerate(window):
            if type(code) is not int:
                return (f"{where(i, j)} is {json.dumps(code)} ({type(code).__name__}); "
                        "event codes must be integers")
            if not _INT64.min <= code <= _INT64.max:
                return f"{where(i, j)} = {code} is outside the int64 range of event codes"
    raise AssertionError("no bad code found")


def _windows_from_lists(lists: list, where) -> Ragged:
    """Flatten JSON windows; a code that is not an int64 is a 400 naming it, as
    ``where(i, j)`` spells element ``j`` of window ``i`` in the request."""
    try:
        return Ragged.from_lists(lists)
    except (TypeError, OverflowError):
        raise BadRequest(_first_bad_code(lists, where)) from None


def windows_from_json(body: bytes, max_items: int) -> Ragged:
    """``{"windows": [[code, ...], ...]}`` -> windows."""
    fix = 'send {"windows": [[code, ...], ...]} with Content-Type: application/json'
    data = json_object(body, fix)
    if "windows" not in data:
        raise BadRequest(f"missing key 'windows': {fix}")
    lists = data["windows"]
    if not isinstance(lists, list):
        raise BadRequest("'windows' must be a list of windows (lists of integer event codes), "
                         f"got {type(lists).__name__}")
    if not lists:
        raise BadRequest("'windows' is empty; send at least one window")
    check_batch_size(len(lists), max_items)
    if set(map(type, lists)) - {list}:
        i = next(i for i, window in enumerate(lists) if type(window) is not list)
        raise BadRequest(f"windows[{i}] must be a list of integer event codes, "
                         f"got {type(lists[i]).__name__}")
    return _windows_from_lists(lists, lambda i, j: f"windows[{i}][{j}]")


def events_from_json(body: bytes) -> Ragged:
    """``{"events": [code, ...]}`` -> one window."""
    fix = 'send {"events": [code, ...]} with Content-Type: application/json'
    data = json_object(body, fix)
    if "events" not in data:
        raise BadRequest(f"missing key 'events': {fix}")
    if not isinstance(data["events"], list):
        raise BadRequest("'events' must be a list of integer event codes, "
                         f"got {type(data['events']).__name__}")
    return _windows_from_lists([data["events"]], lambda i, j: f"events[{j}]")


def model_answer(scores) -> dict:
    """One model's answer for a batch: arrays, with null and an error where not finite."""
    values = scores.probabilities.tolist()
    y_pred = scores.y_pred.tolist()
    for i in scores.non_finite.tolist():
        values[i] = y_pred[i] = None
    return {**scores.entry.identity(), "threshold": scores.entry.threshold,
            "probabilities": values, "y_pred": y_pred, "errors": scores.errors()}


def batch_answer_json(n: int, results) -> bytes:
    return dumps({"n": n, "models": [model_answer(scores) for scores in results]})


def single_answer_json(results) -> bytes:
    answers = [model_answer(scores) for scores in results]
    for answer in answers:  # the batch-of-one answer, with scalars
        answer["probability"] = answer.pop("probabilities")[0]
        answer["y_pred"] = answer["y_pred"][0]
    return dumps({"models": answers})


# ------------------------------------------------------------------ Arrow IPC windows

def _arrow_batch_extent(message) -> tuple[int, int]:
    """(rows, decoded bytes) of an IPC record batch message, read from its metadata before
    anything is decoded.

    A compressed IPC body (LZ4 or ZSTD buffers) decodes to many times its size: 25 KB of
    ZSTD can hold 100 M codes. The size a buffer decodes to is what the reader allocates:
    its own length, or for a compressed buffer the int64 length that prefixes it (-1: the
    buffer was stored uncompressed). pyarrow decodes a batch whole and has no cap, so the
    message's flatbuffer (Arrow's ``Message.fbs``: Message.header -> RecordBatch {length,
    nodes, buffers, compression}) is read here with the ``flatbuffers`` runtime that
    TensorFlow already installs."""
    from flatbuffers import encode, number_types, packer
    from flatbuffers.table import Table

    meta = bytearray(message.metadata.to_pybytes())
    root = Table(meta, encode.Get(packer.uoffset, meta, 0))
    header = Table(meta, root.Indirect(root.Pos + root.Offset(8)))  # Message.header

    def field(index: int) -> int:  # a table field's offset within ``header`` (0: absent)
        return header.Offset(4 + 2 * index)

    rows = header.Get(number_types.Int64Flags, header.Pos + field(0)) if field(0) else 0
    compressed = bool(field(3))
    body = message.body
    decoded = 0
    if field(2):
        start, count = header.Vector(field(2)), header.VectorLen(field(2))
        for i in range(count):
            offset, length = struct.unpack_from("<qq", meta, start + 16 * i)
            if offset < 0 or length < 0 or offset + length > body.size:
                raise ValueError(f"buffer {i} lies outside the message body")
            if compressed and length >= 8:
                (size,) = struct.unpack("<q", body[offset:offset + 8].to_pybytes())
                decoded += length - 8 if size == -1 else size
            else:
                decoded += length
    return rows, decoded


def _no_schema():
    raise ValueError("the stream is empty: it holds no schema message")


def windows_from_arrow(body: bytes, max_items: int, max_bytes: int) -> Ragged:
    """An Arrow IPC stream with a ``windows`` column of ``list<integer>`` -> windows.

    Read message by message: the schema is checked first, then each record batch's row
    count and decoded size (``_arrow_batch_extent``) against ``max_items`` and
    ``max_bytes`` (the body limit holds for the decoded body, however it was compressed)
    before the batch is decoded; a decoded batch is validated whole (offsets inside the
    values, ...), so a crafted stream is a 400, never a 500 or an allocation."""
    pa = optional.require("pyarrow")

    fix = (f"send an Arrow IPC stream (Content-Type: {ARROW}) with a column 'windows' of "
           "type list<int64>, one row per window")
    too_large = PayloadTooLarge(f"the Arrow body decodes to more than the server's limit of "
                                f"{max_bytes} bytes (compressed buffers count as decoded); send "
                                "fewer windows per batch (GET /models gives the limits)")
    batches, rows, decoded = [], 0, 0
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(body))
        schema = pa.ipc.read_schema(next(iter(reader), None) or _no_schema())
        if "windows" not in schema.names:
            raise BadRequest(f"the Arrow stream has no column 'windows' (it has "
                             f"{schema.names}); {fix}")
        kind = schema.field("windows").type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or \
                not pa.types.is_integer(kind.value_type):
            raise BadRequest(f"column 'windows' is {kind}; {fix}")
        for message in reader:
            if message.type != "record batch":
                raise BadRequest(f"the Arrow stream holds a {message.type} message; {fix}")
            batch_rows, batch_bytes = _arrow_batch_extent(message)
            rows, decoded = rows + batch_rows, decoded + batch_bytes
            check_batch_size(rows, max_items)
            if decoded > max_bytes:
                raise too_large
            batch = pa.ipc.read_record_batch(message, schema)
            batch.validate(full=True)
            batches.append(batch)
    except (pa.ArrowException, OSError, ValueError, IndexError, struct.error) as error:
        raise BadRequest(f"the body is not a readable Arrow IPC stream ({error}); {fix}") from None
    column = pa.Table.from_batches(batches, schema).column("windows")
    if column.null_count:
        raise BadRequest(f"windows[{column.is_null().index(True).as_py()}] is null; an empty "
                         "window is an empty list")
    lists = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = lists.flatten()
    if values.null_count:
        raise BadRequest("a window holds a null event code; event codes must be integers")
    codes = values.to_numpy(zero_copy_only=False)
    if codes.dtype == np.uint64 and len(codes) and codes.max() > _INT64.max:
        raise BadRequest("an event code is outside the int64 range of event codes")
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    return Ragged(codes=codes.astype(np.int64, copy=False), offsets=offsets - offsets[0])


def windows_to_arrow(codes: np.ndarray, offsets: np.ndarray) -> bytes:
    """Windows as flat codes and offsets -> the Arrow request body ``windows_from_arrow``
    reads: one ``windows`` column of ``large_list<int64>`` over the arrays as they are (no
    Python object per window). The client's side of the same wire."""
    pa = optional.require("pyarrow")

    offsets = np.asarray(offsets, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)[offsets[0]:offsets[-1]]
    column = pa.LargeListArray.from_arrays(pa.array(offsets - offsets[0]), pa.array(codes))
    batch = pa.record_batch([column], names=["windows"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def arrow_answer_columns(key: str) -> tuple[str, str]:
    """The columns of model ``key`` in an Arrow answer: its probabilities and y_pred."""
    return f"{key}/probability", f"{key}/y_pred"


def batch_answer_arrow(n: int, results) -> bytes:
    pa = optional.require("pyarrow")

    columns, names, models = [], [], []
    for scores in results:
        valid = np.ones(n, dtype=bool)
        valid[scores.non_finite] = False
        mask = None if valid.all() else ~valid
        columns += [pa.array(scores.probabilities, pa.float64(), mask=mask),
                    pa.array(scores.y_pred, pa.int8(), mask=mask)]
        names += arrow_answer_columns(scores.entry.key)
        models.append({**scores.entry.identity(), "key": scores.entry.key,
                       "threshold": scores.entry.threshold, "errors": scores.errors()})
    batch = pa.record_batch(columns, names=names)
    schema = batch.schema.with_metadata({"n": str(n), "models": json.dumps(models)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


# ------------------------------------------------------------------ Open Inference Protocol

OIP_INPUT = {"name": "events", "datatype": "INT64", "shape": [-1, -1]}
OIP_OUTPUTS = ({"name": "probability", "datatype": "FP32", "shape": [-1]},
               {"name": "y_pred", "datatype": "INT8", "shape": [-1]})
_OIP_FIX = ("send one input {\"name\": \"events\", \"datatype\": \"INT64\", \"shape\": [n, L], "
            "\"data\": [...]}: a row per window, its codes then -1 padding")


def _split_oip_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header and the binary tensor data after it (binary tensor extension)."""
    if header_length is None:
        return json_object(body, _OIP_FIX), b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise BadRequest(f"header {OIP_HEADER_LENGTH}: {header_length!r} is not a length within "
                         f"the {len(body)}-byte body")
    return json_object(body[:length], _OIP_FIX), body[length:]


def _oip_matrix(tensor: dict, binary: bytes) -> np.ndarray:
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2
            and all(type(d) is int and d >= 0 for d in shape)):
        raise BadRequest(f"input 'events' has shape {json.dumps(shape)}; it must be [n, L] "
                         "(windows x longest window)")
    if tensor.get("datatype") != "INT64":
        raise BadRequest(f"input 'events' has datatype {json.dumps(tensor.get('datatype'))}; "
                         "it must be INT64")
    size = shape[0] * shape[1]
    _parameters(tensor, "input 'events': ")
    parameters = tensor.get("parameters") or {}
    if "binary_data_size" in parameters:
        nbytes = parameters["binary_data_size"]
        if type(nbytes) is not int or nbytes != 8 * size or nbytes != len(binary):
            raise BadRequest(f"input 'events': binary_data_size {nbytes!r} does not match shape "
                             f"{shape} of INT64 ({8 * size} bytes) and the {len(binary)} bytes sent")
        return np.frombuffer(binary, dtype="<i8").reshape(shape).astype(np.int64)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise BadRequest(f"input 'events' has no 'data' list; {_OIP_FIX}")
    try:
        array = np.array(data)
    except (ValueError, OverflowError):
        raise BadRequest("input 'events': 'data' is not a rectangular array of integers") from None
    if array.size and array.dtype.kind not in "iu":
        raise BadRequest(f"input 'events': 'data' holds {array.dtype.name} values; event codes "
                         "must be integers (INT64)")
    if array.size != size:
        raise BadRequest(f"input 'events': 'data' holds {array.size} values, shape {shape} needs "
                         f"{size}")
    if array.dtype == np.uint64 and array.max() > _INT64.max:
        raise BadRequest("input 'events': a code is outside the INT64 range")
    return array.astype(np.int64).reshape(shape)


def windows_from_oip(body: bytes, header_length: str | None, max_items: int) -> tuple[Ragged, dict]:
    """An OIP inference request -> (windows, the request's JSON header)."""
    request, binary = _split_oip_body(body, header_length)
    inputs = request.get("inputs")
    if not (isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict)
            and inputs[0].get("name") == "events"):
        raise BadRequest(f"'inputs' must hold exactly one tensor named 'events'; {_OIP_FIX}")
    matrix = _oip_matrix(inputs[0], binary)
    n, width = matrix.shape
    if n == 0:
        raise BadRequest("input 'events' has no rows; send at least one window")
    check_batch_size(n, max_items)
    padding = np.logical_or.accumulate(matrix == PADDING, axis=1)
    if (padding & (matrix != PADDING)).any():
        row = int(np.flatnonzero((padding & (matrix != PADDING)).any(axis=1))[0])
        raise BadRequest(f"input 'events' row {row} has an event code after its -1 padding; "
                         "padding goes only after a window's last code")
    lengths = width - padding.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Ragged(codes=matrix[~padding], offsets=offsets), request


def _wants_binary(request: dict, name: str) -> bool:
    for output in request.get("outputs") or ():
        if isinstance(output, dict) and output.get("name") == name:
            return bool((output.get("parameters") or {}).get("binary_data", False))
    return bool((request.get("parameters") or {}).get("binary_data_output", False))


def _parameters(holder: dict, where: str) -> None:
    if not isinstance(holder.get("parameters", {}), dict):
        raise BadRequest(f"{where}'parameters' must be an object")


def oip_requested_outputs(request: dict) -> list[str]:
    """The outputs asked for (all by default); a malformed request is a 400."""
    _parameters(request, "")
    outputs = request.get("outputs")
    known = [o["name"] for o in OIP_OUTPUTS]
    if outputs is None:
        return known
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest("'outputs' must be a list of objects {\"name\": ...}")
    for output in outputs:
        _parameters(output, f"output {json.dumps(output.get('name'))}: ")
    names = [o.get("name") for o in outputs]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadRequest(f"unknown outputs {unknown}; this model has {known}")
    return names


def oip_response(model_name: str, version: str, request: dict, scores) -> tuple[bytes, dict]:
    """The OIP answer: (body, extra headers). ``probability`` FP32 and ``y_pred`` INT8
    (``-1`` where the probability is not finite). As JSON a non-finite probability is
    ``null`` (JSON has no NaN; numpy clients read it as NaN); as binary data it is the
    IEEE value itself. ``parameters.non_finite`` counts them."""
    names = oip_requested_outputs(request)
    probability = scores.probabilities.astype(np.float32)
    y_pred = scores.y_pred.copy()
    y_pred[scores.non_finite] = -1
    arrays = {"probability": probability, "y_pred": y_pred}
    outputs, blobs = [], []
    for spec in OIP_OUTPUTS:
        if spec["name"] not in names:
            continue
        array = arrays[spec["name"]]
        output = {"name": spec["name"], "datatype": spec["datatype"], "shape": [len(array)]}
        if _wants_binary(request, spec["name"]):
            blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            data = array.tolist()
            if spec["name"] == "probability":
                for i in scores.non_finite.tolist():
                    data[i] = None
            output["data"] = data
        outputs.append(output)
    answer = {"model_name": model_name, "model_version": version, "outputs": outputs}
    if isinstance(request.get("id"), str):
        answer["id"] = request["id"]
    if len(scores.non_finite):
        answer["parameters"] = {"non_finite": len(scores.non_finite)}
    header = dumps(answer)
    if not blobs:
        return header, {}
    return header + b"".join(blobs), {OIP_HEADER_LENGTH: str(len(header))}
