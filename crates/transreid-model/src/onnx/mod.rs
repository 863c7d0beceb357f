//! ONNX export: [`export_onnx`] writes a [`crate::TransReid`], [`export_clip_reid_onnx`] a
//! [`crate::ClipReid`], as a graph that onnxruntime, TensorRT and OpenVINO run with a dynamic
//! batch.

mod export;
mod graph;
pub mod proto;

pub use export::{
    export_clip_reid_onnx, export_onnx, ChannelOrder, OnnxError, OnnxInput, OnnxModel, OnnxOptions,
    OnnxPrecision, BATCH_AXIS, CAMERA_INPUT, FEATURES_OUTPUT, IMAGES_INPUT, ONNX_IR_VERSION,
    ONNX_OPSET, VIEW_INPUT,
};
