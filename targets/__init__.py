"""Compilation targets, one package per backend.  Shipped as ``spikec.targets``.

Registered targets and their state are listed in :data:`TARGETS`; the CLI refuses targets that
are not built yet with a clear message.
"""

TARGETS = {
    "intref": "integer-only reference model (bit-exact with Lava's fixed_pt models)",
    "lava": "lava-nc process network run in Loihi2SimCfg(select_tag='fixed_pt')",
    "nir": "NIR graph (HDF5) with faithful neuron semantics",
    "onnx": "the integer model as an integer-only ONNX graph (time unrolled) for onnxruntime",
}

AVAILABLE: set[str] = {"intref", "lava", "nir", "onnx"}  # targets whose backend is implemented in this version
