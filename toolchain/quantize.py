"""INT8 post-training static quantization: an FP32 export -> a calibrated Q/DQ ONNX.

Library: ONNX Runtime's ``quantize_static`` in QDQ format (``onnxruntime`` is
already a dependency; ModelOpt would add a CUDA-oriented package for the same
QDQ output). Settings for the default ``target="tensorrt"`` (TensorRT's explicit
quantization):

* INT8 activations and weights, both symmetric (zero point 0, which TensorRT
  requires), weights per output channel (``per_channel=True``, axis 0 for Conv
  and for Gemm with ``transB=1``);
* only Conv and Gemm are quantized, Q/DQ on their *inputs* (data and weights),
  not on their outputs (``OpTypesToExcludeOutputQuantization``): NVIDIA's
  placement recommendation; TensorRT fuses the rest. The logits stay float;
* biases stay float (``QuantizeBias=False``): TensorRT's ONNX parser refuses a
  DequantizeLinear of an INT32 bias (onnx/onnx-tensorrt#850);
* ``FusedLRN`` nodes are not in the quantized op list, so they keep their
  attributes and float I/O (between a Relu and a MaxPool -> Q/DQ -> Conv), and
  the model-local function stays: ONNX Runtime runs the file unchanged.

``target="onnxruntime"`` keeps ``quantize_static``'s own placement instead: Q/DQ on
Conv/Gemm outputs too and INT32 biases, which ONNX Runtime's CPU provider fuses into
QLinearConv/QGemm (the TensorRT layout runs as DQ + float Conv in ONNX Runtime, slower
than FP32). The file also names the ONNX Runtime graph optimizers that slow its float
remainder down (:data:`ORT_DISABLED_OPTIMIZERS`; our runners leave them out). TensorRT
cannot parse that file.

Calibration runs once (ONNX Runtime's calibrator, its ranges cached to a file) and
every requested target quantizes from those ranges (:func:`quantize_targets`), so the
TensorRT and ONNX Runtime files of one run share them (``toolchain.quant_ranges_sha256``).
It uses the *training* split of the checkpoint's dataset (the same seeded split as
training, evaluation preprocessing), never the validation split that parity uses.
:func:`check_qdq` verifies all of the above on each result before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from toolchain import lrn_op
from toolchain.artifacts import META_PREFIX, encode_metadata
from toolchain.errors import MissingDependencyError, ToolchainError

METHODS = ("minmax", "percentile", "entropy")
TARGETS = ("tensorrt", "onnxruntime")
DEFAULT_TARGET = "tensorrt"
DEFAULT_METHOD = "minmax"
DEFAULT_SAMPLES = 256
#: Fewer images than this give ranges (and histograms) too noisy to trust.
MIN_SAMPLES = 16
CALIBRATION_BATCH = 32
QUANTIZED_OPS = ("Conv", "Gemm")
LIBRARY = "onnxruntime.quantization.quantize_static"


@dataclass
class QuantizeResult:
    path: Path
    metadata: dict
    summary: "QDQSummary"
    seconds: float


@dataclass
class QDQSummary:
    """What a Q/DQ model holds, and every way it misses the toolchain's INT8 contract."""

    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    quantized_ops: list[str] = field(default_factory=list)      # Conv/Gemm fed by DQ on data and weights
    int32_bias_dq: int = 0                                       # DQ of INT32 biases (target onnxruntime)
    fused_lrn: dict[str, dict] = field(default_factory=dict)     # node name -> attributes
    local_functions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"quantize_nodes": self.quantize_nodes, "dequantize_nodes": self.dequantize_nodes,
                "int32_bias_dq": self.int32_bias_dq,
                "quantized_ops": self.quantized_ops, "fused_lrn": self.fused_lrn,
                "local_functions": self.local_functions, "problems": self.problems}


def _attributes(node) -> dict:
    from onnx import helper

    return {attr.name: (value.decode() if isinstance(value := helper.get_attribute_value(attr), bytes) else value)
            for attr in node.attribute}


def check_qdq(model, *, expected_lrn: dict[str, dict] | None = None) -> QDQSummary:
    """Check a Q/DQ ModelProto (pure: no ONNX Runtime). ``expected_lrn``: FusedLRN attributes of the source.

    Every Conv/Gemm takes data and weights from DequantizeLinear; every Q/DQ has an
    INT8 zero point of 0 (INT32 for the DQ of an INT32 bias); weight DQs are per output
    channel; FusedLRN nodes and the local function are present (with the source's
    attributes when given).
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    summary = QDQSummary(local_functions=[f"{f.domain}:{f.name}" for f in model.functions])
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.domain in ("", "ai.onnx"):
            if node.op_type == "QuantizeLinear":
                summary.quantize_nodes += 1
            else:
                summary.dequantize_nodes += 1
            zero = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            source = inits.get(node.input[0])
            bias = node.op_type == "DequantizeLinear" and source is not None and source.data_type == TensorProto.INT32
            summary.int32_bias_dq += bias
            if zero is None and not bias:
                summary.problems.append(f"{node.name}: no zero-point initializer (type defaults to UINT8)")
            elif zero is not None and zero.data_type != (TensorProto.INT32 if bias else TensorProto.INT8):
                summary.problems.append(f"{node.name}: zero point is {TensorProto.DataType.Name(zero.data_type)}, "
                                        "not INT8")
            elif zero is not None and np.any(numpy_helper.to_array(zero) != 0):
                summary.problems.append(f"{node.name}: zero point is not 0 (asymmetric)")
        elif node.op_type == lrn_op.OP_TYPE and node.domain == lrn_op.DOMAIN:
            summary.fused_lrn[node.name] = _attributes(node)

    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS or node.domain not in ("", "ai.onnx"):
            continue
        feeds = [producer.get(name) for name in node.input[:2]]
        missing = [role for role, feed in zip(("data", "weights"), feeds)
                   if feed is None or feed.op_type != "DequantizeLinear"]
        if missing:
            summary.problems.append(f"{node.op_type} {node.name}: {' and '.join(missing)} not from DequantizeLinear")
            continue
        weight_dq = feeds[1]
        weight = inits.get(weight_dq.input[0])
        scale = inits.get(weight_dq.input[1])
        attrs = _attributes(node)
        channel_axis = 1 if node.op_type == "Gemm" and not attrs.get("transB", 0) else 0
        axis = _attributes(weight_dq).get("axis", 1)
        if weight is None or weight.data_type != TensorProto.INT8:
            summary.problems.append(f"{node.op_type} {node.name}: weights are not an INT8 initializer")
        elif scale is None or len(scale.dims) != 1 or axis % len(weight.dims) != channel_axis \
                or scale.dims[0] != weight.dims[channel_axis]:
            summary.problems.append(f"{node.op_type} {node.name}: weights are not quantized per output channel")
        else:
            summary.quantized_ops.append(node.name)

    if expected_lrn is not None:
        if set(summary.fused_lrn) != set(expected_lrn):
            summary.problems.append(f"{lrn_op.OP_TYPE} nodes {sorted(summary.fused_lrn)} instead of "
                                    f"{sorted(expected_lrn)}")
        for name, attrs in expected_lrn.items():
            if name in summary.fused_lrn and summary.fused_lrn[name] != attrs:
                summary.problems.append(f"{name}: attributes changed ({summary.fused_lrn[name]} vs {attrs})")
    if summary.fused_lrn and f"{lrn_op.DOMAIN}:{lrn_op.OP_TYPE}" not in summary.local_functions:
        summary.problems.append(f"the model-local function {lrn_op.DOMAIN}.{lrn_op.OP_TYPE} is gone")
    if not summary.quantized_ops and not summary.problems:
        summary.problems.append("no Conv or Gemm is quantized")
    return summary


def is_quantized(model) -> bool:
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


# --------------------------------------------------------------------------- calibration data


def check_samples(samples: int, available: int | None = None, *, source: str = "") -> None:
    if samples < MIN_SAMPLES:
        raise ToolchainError(f"--samples {samples} is too few calibration images (at least {MIN_SAMPLES})",
                             hint=f"use --samples {DEFAULT_SAMPLES}")
    if available is not None and available < samples:
        raise ToolchainError(f"{source} has only {available} training images, --samples asks for {samples}",
                             hint=f"pass --samples {available} or fewer (at least {MIN_SAMPLES})"
                             if available >= MIN_SAMPLES else "calibrate on a larger dataset (--calibration)")


def calibration_inputs(meta: dict, *, dataset: str | None = None, samples: int = DEFAULT_SAMPLES,
                       data_dir=None, seed: int = 0):
    """``samples`` images of the training split (seeded choice), preprocessed as for evaluation.

    The split is the checkpoint's (same seed and fraction as training), so no
    validation image is ever used. Returns (float32 array NCHW, description).
    """
    import numpy as np
    import torch

    from toolchain.data import eval_transform, load_dataset

    check_samples(samples)
    spec = dataset or meta.get("dataset")
    if not spec:
        raise ToolchainError("the checkpoint records no dataset to calibrate on",
                             hint="pass --calibration DATASET (its training split is used)")
    split = meta.get("split") if isinstance(meta.get("split"), dict) else {}
    try:
        bundle = load_dataset(spec, image_size=int(meta["image_size"]), in_channels=int(meta["in_channels"]),
                              data_dir=data_dir, seed=int(split.get("seed", 0)),
                              val_fraction=float(split.get("val_fraction", 0.2)), mean=meta.get("mean"),
                              std=meta.get("std"), download=False)
    except MissingDependencyError:  # torchvision's files are not there (quantize never downloads)
        from toolchain.data import default_data_dir

        where = data_dir or default_data_dir()
        raise MissingDependencyError(f"cannot load calibration dataset {spec!r}: its files are not under {where}",
                                     hint=f"download them once (e.g. `toolchain train --dataset {spec}`), pass "
                                     "--data-dir, or calibrate on another training split with --calibration") from None
    except ToolchainError as exc:
        raise ToolchainError(f"cannot load calibration dataset {spec!r}: {exc.message}",
                             hint=(f"{exc.hint}, " if exc.hint else "")
                             + "or pass --calibration DATASET to calibrate on another training split") from None
    except (OSError, RuntimeError) as exc:  # torchvision: files missing and download=False
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MissingDependencyError(f"cannot load calibration dataset {spec!r}: {first}",
                                     hint="download it first (toolchain train does) or pass --calibration digits"
                                     ) from None
    if int(meta.get("num_classes", len(bundle.classes))) != len(bundle.classes):
        raise ToolchainError(f"calibration dataset {spec} has {len(bundle.classes)} classes, the model "
                             f"{meta['num_classes']}", hint="calibrate on the dataset the model was trained on")
    train = bundle.train
    check_samples(samples, len(train), source=f"dataset {spec}")
    # The training split's own transform is random augmentation: use evaluation preprocessing.
    transform = eval_transform(bundle.image_size, bundle.mean, bundle.std, channels=bundle.in_channels)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:samples].tolist()
    images = [np.asarray(transform(train.base[train.indices[i]][0]), dtype=np.float32) for i in order]
    return np.stack(images), f"{spec} training split, {samples} images (seed {seed})"


# --------------------------------------------------------------------------- quantization


@contextlib.contextmanager
def _quiet_library():
    """quantize_static logs pre-processing advice to the root logger and its histogram calibrators print."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


#: Entropy (KL) calibration over 2048 histogram bins into 128 quantized bins, TensorRT's
#: entropy calibrator's choice. quantize_static builds its entropy calibrator with 128
#: bins for 128 quantized bins, which leaves one candidate threshold: the min-max range.
ENTROPY_OPTIONS = {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True}


def _calibrate(source_onnx, reader, method: str, tmp: Path) -> Path:
    """Run ONNX Runtime's calibrator once; return its calibration cache (tensor ranges) file.

    Every target quantizes from this one file (``quantize_static(calibration_cache_path=...)``),
    so the TensorRT and ONNX Runtime files of one run share their activation ranges. The
    calibrator covers the inputs and outputs of :data:`QUANTIZED_OPS`, the tensors either
    placement puts Q/DQ on. Entropy gets :data:`ENTROPY_OPTIONS`; minmax and percentile the
    defaults ``quantize_static`` would use itself.
    """
    import inspect

    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime

        raise MissingDependencyError(f"toolchain quantize needs a newer onnxruntime than {onnxruntime.__version__} "
                                     "(quantize_static's calibration_cache_path)", hint="pip install -U onnxruntime")
    calibrator = create_calibrator(Path(source_onnx), list(QUANTIZED_OPS),
                                   augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=_calibration_method(method),
                                   extra_options=ENTROPY_OPTIONS if method == "entropy" else {})
    calibrator.collect_data(reader)
    cache = tmp / f"{method}-ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise ToolchainError(f"unknown calibration method {method!r}", hint=f"choose {', '.join(METHODS)}")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]


#: ONNX Runtime graph optimizers a session over the ``onnxruntime`` target runs faster without
#: (CPU provider; measured on the digits model, see the README), recorded in the file's
#: metadata (``toolchain.ort_disabled_optimizers``) and applied by
#: :class:`toolchain.runners.OnnxRuntimeRunner`:
#:
#: * ``NchwcTransformer`` blocks float Convs into 16-channel NCHWc; the only float Conv left
#:   is FusedLRN's one-channel window sum, which it pads 16-fold and reorders back (the
#:   largest single op of the file with it on);
#: * ``QDQPropagationTransformer`` moves the Q after each MaxPool above it, so the float
#:   MaxPool after FusedLRN becomes ONNX Runtime's slow NCHW uint8 MaxPool;
#: * ``NhwcTransformer`` turns QLinearConv NHWC and leaves float Transposes around FusedLRN;
#:   without it QLinearConv reorders its uint8 tensors itself.
#:
#: The FP32 file keeps every optimizer: without NCHWc its float Convs run 2-3x slower.
ORT_DISABLED_OPTIMIZERS = ("NchwcTransformer", "NhwcTransformer", "QDQPropagationTransformer")
ORT_OPTIMIZERS_KEY = "ort_disabled_optimizers"


def runtime_metadata(target: str) -> dict:
    """Extra ``toolchain.*`` metadata a target's file carries for its runtime."""
    return {ORT_OPTIMIZERS_KEY: ",".join(ORT_DISABLED_OPTIMIZERS)} if target == "onnxruntime" else {}


def quantize_options(target: str) -> dict:
    """``quantize_static``'s ``extra_options`` for a consumer (see the module docstring)."""
    if target not in TARGETS:
        raise ToolchainError(f"unknown quantization target {target!r}", hint=f"choose {', '.join(TARGETS)}")
    options = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if target == "tensorrt":
        options.update({"QuantizeBias": False, "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)})
    return options


def check_source_onnx(model, *, checkpoint_sha256: str | None = None) -> dict:
    """An FP32 FusedLRN export of this checkpoint; refuse FP16, already-quantized or foreign files."""
    from toolchain.artifacts import decode_metadata

    meta = decode_metadata(model)
    if meta.get("dtype") == "fp16":
        raise ToolchainError("the ONNX file is FP16; INT8 calibration needs the FP32 export",
                             hint="export it without --dtype fp16, or leave --onnx out to export here")
    if is_quantized(model):
        raise ToolchainError("the ONNX file is already quantized (it has QuantizeLinear/DequantizeLinear nodes)",
                             hint="quantize the FP32 export instead")
    from toolchain.onnx_lrn import node_problems

    problems = [p for node in model.graph.node if node.op_type == lrn_op.OP_TYPE and node.domain == lrn_op.DOMAIN
                for p in node_problems(node)]
    if problems:
        raise ToolchainError(f"the ONNX file's FusedLRN nodes are not valid: {'; '.join(problems)}",
                             hint="re-export it with 'toolchain export'")
    recorded = meta.get("checkpoint_sha256") or None
    if checkpoint_sha256 and recorded and recorded != checkpoint_sha256:
        raise ToolchainError(f"the ONNX file was exported from another checkpoint (sha256 {recorded[:12]}...)",
                             hint="pass the checkpoint it came from, or leave --onnx out")
    return meta


def pair_outputs(outputs, targets) -> dict[str, str]:
    """The CLI's ``-o`` and ``--target`` (each repeatable) as {target: path}, paired in order.

    One ``-o`` and no ``--target`` means the default target; otherwise each ``-o`` needs
    its own ``--target``, and a target may appear once.
    """
    outputs, targets = list(outputs), list(targets)
    if not outputs:
        raise ToolchainError("no output file given", hint="pass -o FILE")
    if not targets and len(outputs) == 1:
        targets = [DEFAULT_TARGET]
    if len(targets) != len(outputs):
        raise ToolchainError(f"{len(outputs)} output file(s) for {len(targets)} --target(s)",
                             hint="give one --target per -o, in the same order (--target tensorrt -o a.onnx "
                                  "--target onnxruntime -o b.onnx)")
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ToolchainError(f"--target {repeated[0]} is given twice", hint="one file per target")
    for target in targets:
        quantize_options(target)
    return dict(zip(targets, outputs))


def check_outputs(outputs: dict, *, force: bool = False, inputs=()) -> dict[str, Path]:
    """{target: path} for one calibration: known targets, one file each, distinct, writable, none an input."""
    from toolchain.io import guard_output

    if not outputs:
        raise ToolchainError("no output file given", hint="pass -o FILE")
    paths = {}
    for target, path in outputs.items():
        quantize_options(target)
        paths[target] = Path(path)
    if len({p.resolve() for p in paths.values()}) != len(paths):
        raise ToolchainError("two targets would write the same file", hint="give each --target its own -o")
    for path in paths.values():
        guard_output(path, force=force, inputs=inputs, what="--output")
    return paths


def quantize_model(source_onnx, inputs, output, *, method: str = DEFAULT_METHOD, calibration: str = "",
                   target: str = DEFAULT_TARGET, force: bool = False,
                   batch_size: int = CALIBRATION_BATCH) -> QuantizeResult:
    """Quantize the FP32 ONNX file ``source_onnx`` with ``inputs`` (N, C, H, W) and write ``output`` atomically."""
    return quantize_targets(source_onnx, inputs, {target: output}, method=method, calibration=calibration,
                            force=force, batch_size=batch_size)[target]


def quantize_targets(source_onnx, inputs, outputs: dict, *, method: str = DEFAULT_METHOD, calibration: str = "",
                     force: bool = False, batch_size: int = CALIBRATION_BATCH) -> dict[str, QuantizeResult]:
    """One calibration of ``source_onnx`` on ``inputs``, one Q/DQ file per target: ``outputs`` = {target: path}.

    Every file is checked (:func:`check_qdq`, the ONNX checker, one ONNX Runtime run)
    before any is written; each is written atomically.
    """
    import time

    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from toolchain.artifacts import load_onnx
    from toolchain.io import atomic_output, sha256_file

    paths = check_outputs(outputs, force=force, inputs={"--onnx": source_onnx})
    check_samples(len(inputs))
    _calibration_method(method)
    source = load_onnx(source_onnx)
    check_source_onnx(source)
    expected_lrn = {n.name: _attributes(n) for n in source.graph.node
                    if n.op_type == lrn_op.OP_TYPE and n.domain == lrn_op.DOMAIN}
    input_name = source.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = iter([inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)])

        def get_next(self):
            chunk = next(self.chunks, None)
            return None if chunk is None else {input_name: chunk}

    models, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="toolchain-quantize-") as tmp, _quiet_library():
        started = time.perf_counter()
        ranges = _calibrate(source_onnx, Reader(), method, Path(tmp))
        calibration_seconds = time.perf_counter() - started
        ranges_sha256 = sha256_file(ranges)
        for target in paths:
            started = time.perf_counter()
            quantized_path = Path(tmp) / f"model.{target}.int8.onnx"
            quantize_static(
                str(source_onnx), str(quantized_path), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=_calibration_method(method),
                extra_options=quantize_options(target), calibration_cache_path=str(ranges))
            models[target] = onnx.load(str(quantized_path))
            seconds[target] = calibration_seconds + time.perf_counter() - started

    source_sha256 = sha256_file(source_onnx)
    results = {}
    for target, model in models.items():
        props = {prop.key: prop.value for prop in model.metadata_props}
        props.update(encode_metadata({
            "precision": "int8",
            "quant_format": "QDQ",
            "quant_target": target,
            "quant_scheme": "int8 symmetric (zero point 0); weights per channel, activations per tensor",
            "quant_method": method,
            "quant_samples": len(inputs),
            "quant_calibration": calibration,
            "quant_ranges_sha256": ranges_sha256,
            "quant_library": LIBRARY,
            "quant_library_version": f"onnxruntime {onnxruntime.__version__}",
            "quant_source_onnx_sha256": source_sha256,
            **runtime_metadata(target),
        }))
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, props)
        summary = check_qdq(model, expected_lrn=expected_lrn)
        if not summary.ok:
            raise ToolchainError(f"the {target} quantized model misses the INT8 contract: "
                                 + "; ".join(summary.problems),
                                 hint="this is a bug in toolchain.quantize; please report it")
        try:
            onnx.checker.check_model(model, full_check=True)
        except onnx.checker.ValidationError as exc:
            first = (str(exc).strip().splitlines() or ["invalid model"])[0]
            raise ToolchainError(f"the {target} quantized ONNX model is invalid: {first}",
                                 hint="this is a bug in toolchain.quantize; please report it") from None
        _smoke_run(model, inputs[:2], input_name)
        results[target] = QuantizeResult(path=paths[target], metadata=props, summary=summary, seconds=seconds[target])
    for target, model in models.items():
        with atomic_output(paths[target], force=force) as tmp:
            onnx.save_model(model, str(tmp), save_as_external_data=False)
    return results


def _smoke_run(model, batch, input_name: str) -> None:
    """ONNX Runtime CPU must load and run the file with no custom-op library (before it is written)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        out = session.run(None, {input_name: batch})[0]
    except Exception as exc:  # onnxruntime's own exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ToolchainError(f"ONNX Runtime cannot run the quantized model: {first}") from None
    if not np.isfinite(out).all():
        raise ToolchainError("the quantized model gives NaN/Inf on calibration images")


def quantize_checkpoint(checkpoint, output, *, onnx_path=None, calibration: str | None = None,
                        samples: int = DEFAULT_SAMPLES, method: str = DEFAULT_METHOD, data_dir=None, seed: int = 0,
                        target: str = DEFAULT_TARGET, force: bool = False) -> QuantizeResult:
    """Checkpoint (and optionally its FP32 export) -> calibrated INT8 Q/DQ ONNX at ``output``."""
    return quantize_checkpoint_targets(checkpoint, {target: output}, onnx_path=onnx_path, calibration=calibration,
                                       samples=samples, method=method, data_dir=data_dir, seed=seed,
                                       force=force)[target]


def quantize_checkpoint_targets(checkpoint, outputs: dict, *, onnx_path=None, calibration: str | None = None,
                                samples: int = DEFAULT_SAMPLES, method: str = DEFAULT_METHOD, data_dir=None,
                                seed: int = 0, force: bool = False) -> dict[str, QuantizeResult]:
    """Checkpoint -> one calibration -> one Q/DQ ONNX per target (``outputs`` = {target: path}).

    Everything the user can get wrong (outputs exist or collide, checkpoint, dataset,
    samples, FP16 or foreign ONNX) is checked before any export or calibration work.
    """
    from toolchain.checkpoint import load_checkpoint
    from toolchain.artifacts import load_onnx
    from toolchain.export import export_model
    from toolchain.weights import verify_onnx_weights

    check_outputs(outputs, force=force, inputs={"--checkpoint": checkpoint, "--onnx": onnx_path})
    _calibration_method(method)
    check_samples(samples)
    ckpt = load_checkpoint(checkpoint)
    if onnx_path is not None:
        source = load_onnx(onnx_path)
        check_source_onnx(source, checkpoint_sha256=ckpt.sha256)
        # By content: an ONNX file edited with its metadata kept, or exported from other weights,
        # would otherwise be calibrated and written with this checkpoint's sha256.
        verify_onnx_weights(ckpt.model, source, onnx_label=f"--onnx {onnx_path}",
                            reference_label=f"checkpoint {checkpoint}")
        del source
    inputs, description = calibration_inputs(ckpt.meta, dataset=calibration, samples=samples, data_dir=data_dir,
                                             seed=seed)
    if onnx_path is not None:
        return quantize_targets(onnx_path, inputs, outputs, method=method, calibration=description, force=force)
    with tempfile.TemporaryDirectory(prefix="toolchain-quantize-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export_model(ckpt.model, ckpt.meta, checkpoint_sha256=ckpt.sha256, output=fp32)
        return quantize_targets(fp32, inputs, outputs, method=method, calibration=description, force=force)


def summary_dict(result: QuantizeResult) -> dict:
    return {"output": str(result.path), "bytes": result.path.stat().st_size, "seconds": round(result.seconds, 2),
            "qdq": result.summary.to_dict(),
            "metadata": {k.removeprefix(META_PREFIX): v for k, v in result.metadata.items()
                         if k.startswith(META_PREFIX + "quant_") or k == META_PREFIX + "precision"
                         or k == META_PREFIX + ORT_OPTIMIZERS_KEY}}


def summary_json(result: QuantizeResult | dict) -> str:
    """One file: its summary; several (``{target: result}``): a list of them."""
    if isinstance(result, dict):
        return json.dumps([summary_dict(r) for r in result.values()], indent=2)
    return json.dumps(summary_dict(result), indent=2)
