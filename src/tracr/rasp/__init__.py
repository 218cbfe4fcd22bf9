"""The RASP language.

Public modules:
  rasp: expressions (`tokens`, `Map`, `Select`, `Aggregate`, ...), annotations and `evaluate`.
  causal_eval: `evaluate` with every selector masked to its lower triangle.

Import them as modules: `from tracr.rasp import rasp`.
"""

__all__ = ["causal_eval", "rasp"]
