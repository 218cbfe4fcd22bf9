"""tracr: compile RASP programs into transformer weights that compute them exactly.

Subpackages: `tracr.rasp` (the language), `tracr.compiler` (`compiling`, `lib`,
`validating`), `tracr.craft` (the intermediate representation), `tracr.transformer` (the
numpy model). Nothing is imported here, so `import tracr.rasp.rasp` stays light.
"""
