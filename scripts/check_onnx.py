#!/usr/bin/env python3
"""Checks exported ONNX files with the official checker and runs them in onnxruntime and OpenVINO.

Usage: check_onnx.py FOLDER

FOLDER holds `<case>.onnx` and `<case>.json` pairs, as the Rust test `onnx_export` writes them
with `TRANSREID_ONNX_CASES=FOLDER`: the graph's inputs and the features `TransReid::embed`
gives for them. Each graph must pass `onnx.checker.check_model(full_check=True)` and strict
shape inference with a symbolic `batch`, and onnxruntime's features must equal the expected
ones (fp32: within 1e-4 of the feature scale; fp16: 1e-2 and cosine 0.9999, the Rust test's
tolerances), at the batch given and image by image; OpenVINO's (CPU), read from the same file with
its batch left dynamic, too.
"""
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov



def inputs_of(case, model):
    feeds = {}
    for graph_input in model.graph.input:
        name = graph_input.name
        spec = case["inputs"][name]
        elem = graph_input.type.tensor_type.elem_type
        dtype = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.UINT8: np.uint8,
                 onnx.TensorProto.INT64: np.int64}[elem]
        feeds[name] = np.asarray(spec["values"], dtype=dtype).reshape(spec["shape"])
    return feeds


def compare(got, expected, precision, what):
    scale = float(np.abs(expected).max())
    diff = float(np.abs(got - expected).max())
    cos = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    if precision == "fp32":
        assert diff <= 1e-4 * scale, f"{what}: {diff} of {scale}"
    else:
        assert diff <= 1e-2 * scale and cos.min() >= 0.9999, f"{what}: {diff} of {scale}, cosine {cos.min()}"
    return diff / scale


def check(onnx_path):
    case = json.loads(onnx_path.with_suffix(".json").read_text())
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    out_dims = inferred.graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch", out_dims
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    props = {p.key: p.value for p in model.metadata_props}
    assert int(props["transreid.feature_dim"]) == out_dims[1].dim_value

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["transreid.input"] == props["transreid.input"]
    feeds = inputs_of(case, model)
    got = session.run(["features"], feeds)[0]
    expected = np.asarray(case["expected"], dtype=np.float32).reshape(got.shape)
    scale = float(np.abs(expected).max())
    relative = compare(got, expected, case["precision"], "onnxruntime")
    for i in range(got.shape[0]):
        single = session.run(["features"], {k: v[i:i + 1] for k, v in feeds.items()})[0]
        row_diff = float(np.abs(single[0] - got[i]).max())
        assert row_diff <= 1e-5 * scale, f"row {i} alone differs by {row_diff}"

    core = ov.Core()
    read = core.read_model(str(onnx_path))
    assert read.input("images").get_partial_shape()[0].is_dynamic, "OpenVINO fixed the batch"
    # OpenVINO's CPU plugin computes in bf16 where the CPU has it unless asked for f32.
    compiled = core.compile_model(read, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got_ov = compiled(feeds)[compiled.output("features")]
    compare(got_ov, expected, case["precision"], "OpenVINO")
    return relative


def main():
    folder = pathlib.Path(sys.argv[1])
    cases = sorted(folder.glob("*.onnx"))
    if not cases:
        print(f"no .onnx files in {folder}", file=sys.stderr)
        return 1
    failed = 0
    for path in cases:
        try:
            relative = check(path)
            print(f"ok     {path.stem}: max difference {relative:.2e} of the feature scale")
        except Exception as error:  # report every case, then fail
            failed += 1
            print(f"FAILED {path.stem}: {error!r}")
    print(
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, OpenVINO {ov.__version__}: "
        f"{len(cases) - failed} passed, {failed} failed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
