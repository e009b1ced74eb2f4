"""The zoo's kernels, one module per family; tests use them through the index, tests/zoo.py
(`import zoo`: zoo.ZOO, zoo.JITS, zoo.softmax, ...)."""
