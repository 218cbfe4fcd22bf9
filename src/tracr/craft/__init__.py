"""craft: linear algebra on named vector spaces, the compiler's intermediate representation.

Public modules: `bases` (directions, spaces, vectors), `vectorspace_fns` (linear maps and
bilinear forms), `transformers` (MLP, attention heads, series) and `chamber` (the block
builders that lower RASP operations to those blocks).
"""

from tracr.craft import bases, chamber, transformers, vectorspace_fns

__all__ = ["bases", "chamber", "transformers", "vectorspace_fns"]
