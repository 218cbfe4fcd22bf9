"""The compiled model's runtime: `model` (the numpy forward pass), `encoder`, and the
forward pass's helpers `sparse` (products with non-zero blocks only) and `runtime` (BLAS
threads, glibc's freed memory)."""
