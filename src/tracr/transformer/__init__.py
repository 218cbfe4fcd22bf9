"""The compiled model's runtime: `model` (the numpy forward pass), `encoder`, and the
forward pass's helpers `sparse` (where each weight's non-zeros lie, checked every call),
`plan` (what each layer multiplies, derived from those), `query_table` (layer 0's heads
with few distinct queries, read off the embedding table) and `runtime` (BLAS threads,
glibc's freed memory)."""
