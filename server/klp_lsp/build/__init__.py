"""Building kernel objects for `check --compile`: prepared build trees, kbuild, overlays, caching.

The only code that runs the kernel's build (make, the compiler, objtool, a fixture's build
script). It never writes into the user's source tree: the original source is compiled with
`make O=` into the prepared tree, the patched source from an overlay of symlinks with the
changed files copied in.
"""
