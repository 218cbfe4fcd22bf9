"""`python -m tracr.cli` runs the `tracr` command."""

from tracr.cli import console_main

console_main()
