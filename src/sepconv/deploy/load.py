"""Running an ONNX file on a CPU runtime of the backend table: :func:`load_onnx`."""

from __future__ import annotations

from pathlib import Path

from sepconv.deploy._extras import ONNX, require
from sepconv.deploy.compiled import InferenceModel, Target
from sepconv.deploy.inputs import check_threads
from sepconv.deploy.registry import DEFAULT_ONNX_BACKEND, find, rows
from sepconv.utils.validation import positive_int

__all__ = ["load_onnx"]


def load_onnx(
    path: str | Path,
    *,
    backend: str = DEFAULT_ONNX_BACKEND,
    batch_size: int = 1,
    threads: int | None = None,
) -> InferenceModel:
    """Run an ONNX file on ONNX Runtime or OpenVINO with the settings of
    :func:`~sepconv.deploy.runtime.compile_for_inference` (fp32 or int8 QDQ files alike).

    The file must have one input of shape ``(N, C, H, W)`` with static ``C, H, W`` (``N`` may be
    dynamic; it is fixed to ``batch_size``) and one output. A file containing QuantizeLinear
    nodes is reported as ``precision="int8"``.

    Args:
        path: The ``.onnx`` file.
        backend: A CPU backend that runs ONNX files (a row of
            :data:`~sepconv.deploy.registry.BACKEND_TABLE` built ``from_onnx``):
            ``"onnxruntime"`` (default) or ``"openvino"``.
        batch_size: ``N`` of the inputs the returned model takes.
        threads: Intra-op threads (default: ``torch.get_num_threads()``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an invalid argument, or a file whose input or outputs do not fit.
        ImportError: the runtime (or ``onnx``) is not installed; the message names the extra.

    Example:
        >>> int8 = load_onnx("mobilenet_v2.int8.onnx", backend="openvino")  # doctest: +SKIP
        >>> int8.precision  # doctest: +SKIP
        'int8'
    """
    runtime = find(backend, [row for row in rows("cpu") if row.onnx], argument="backend")
    positive_int("batch_size", batch_size)
    used_threads = check_threads(threads)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ONNX file {str(file)!r} does not exist.")
    onnx = require(ONNX, "reading an ONNX file")
    try:
        proto = onnx.load(str(file), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others for a damaged file
        raise ValueError(
            f"File {str(file)!r} is not a readable ONNX model ({err}); re-export it."
        ) from err
    graph_inputs = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in graph_inputs]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(dims) != 4 or min(dims[1:]) < 1 or len(proto.graph.output) != 1:
        raise ValueError(
            f"ONNX file {str(file)!r} does not fit: expected one input of shape (N, C, H, W) with "
            f"fixed C, H, W and one output, received {len(inputs)} input(s) of dims {dims} and "
            f"{len(proto.graph.output)} output(s)."
        )
    shape = (batch_size, dims[1], dims[2], dims[3])
    int8 = any(node.op_type == "QuantizeLinear" for node in proto.graph.node)
    runner, _ = runtime.run_file(file, Target(shape, "fp32", used_threads))
    return InferenceModel(
        backend=runtime.name,
        input_shape=shape,
        threads=used_threads,
        run=runner,
        precision="int8" if int8 else "fp32",
        path=file,
    )
