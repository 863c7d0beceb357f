//! An ONNX graph under construction: nodes in topological order, named initializers and
//! constants, each value named once.

use std::collections::BTreeSet;

use super::proto::{attribute_type, data_type, AttributeProto, NodeProto, TensorProto};

/// Nodes and initializers of a graph being written. Node outputs are named
/// `<scope>/<op>_<n>`, so a runtime's error names the module that failed.
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    names: BTreeSet<String>,
    scope: String,
    count: usize,
}

impl Graph {
    /// Names the nodes added from now on after `scope` (a module path).
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.count += 1;
        let name = if self.scope.is_empty() {
            format!("{op}_{}", self.count)
        } else {
            format!("{}/{op}_{}", self.scope, self.count)
        };
        self.node_named(op, inputs, attributes, &name);
        name
    }

    /// Adds a node whose output has the given name (a graph output, say).
    pub fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: &str,
    ) {
        let fresh = self.names.insert(output.to_string());
        debug_assert!(fresh, "value {output} is written twice");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            attribute: attributes,
            domain: String::new(),
        });
    }

    /// A named f32 initializer (a model parameter, under its checkpoint key).
    pub fn f32_tensor(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data_type::FLOAT, raw)
    }

    /// A named f16 initializer, rounded to nearest from f32.
    pub fn f16_tensor(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        self.initializer(name, dims, data_type::FLOAT16, raw)
    }

    /// An anonymous f32 constant.
    pub fn f32_const(&mut self, dims: &[usize], values: &[f32]) -> String {
        let name = self.constant_name();
        self.f32_tensor(&name, dims, values)
    }

    /// An anonymous f16 constant.
    pub fn f16_const(&mut self, dims: &[usize], values: &[f32]) -> String {
        let name = self.constant_name();
        self.f16_tensor(&name, dims, values)
    }

    /// An anonymous int64 constant (shapes, indices); `dims` empty for a scalar.
    pub fn i64_const(&mut self, dims: &[usize], values: &[i64]) -> String {
        let name = self.constant_name();
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(&name, dims, data_type::INT64, raw)
    }

    fn constant_name(&mut self) -> String {
        self.count += 1;
        format!("{}/const_{}", self.scope, self.count)
    }

    fn initializer(&mut self, name: &str, dims: &[usize], kind: i32, raw: Vec<u8>) -> String {
        let fresh = self.names.insert(name.to_string());
        debug_assert!(fresh, "initializer {name} is written twice");
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: kind,
            name: name.to_string(),
            raw_data: raw,
        });
        name.to_string()
    }
}

/// An int attribute.
pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

/// An ints attribute.
pub(crate) fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: value,
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}
