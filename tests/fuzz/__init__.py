"""A seeded differential fuzzer: random kernels (every dtype and op, control flow, threadgroup memory,
simd ops, atomics) run on the CPU executor, through enigma.verify (clang) and by an independent numpy
model of the IR's semantics (model.py), which must all agree. `scripts/fuzz.py` runs any number of
them; tests/fuzz/test_fuzz.py runs a few hundred in CI."""
