"""Names of the attributes that program-graph nodes carry.

The program graph (see `rasp_to_graph.ProgramGraph`, a DiGraph-like class) has nodes keyed by
expression label. Each node is a dict; these constants are its keys. They keep the
reference Tracr's names so that scripts which inspect a traced graph keep working.
"""

from __future__ import annotations

from typing import Any

Node = dict[str, Any]
NodeID = str

ID = "ID"
EXPR = "EXPR"
VALUE_SET = "VALUE_SET"
OUTPUT_BASIS = "OUTPUT_BASIS"
MODEL_BLOCK = "MODEL_BLOCK"
