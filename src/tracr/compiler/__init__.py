"""The compiler: RASP program -> exact transformer.

Public modules: `compiling` (`compile_rasp_to_model`), `lib` (the program library),
`validating` (what cannot be compiled, and why), `circuit` (which block computes each SOp:
`model.circuit`). The passes, in order: `rasp_to_graph`,
`validating`, `basis_inference`, `expr_to_craft_graph`, `craft_graph_to_model`,
`assemble` (the weights). The model they make, `AssembledTransformerModel`, lives in
`assembled_model` (reading its output: `readout`); `assemble` re-exports their names.
Import modules, e.g. `from tracr.compiler import compiling, lib`.
"""
