"""The compiled model's runtime: `model` (the numpy forward pass) and `encoder`."""
