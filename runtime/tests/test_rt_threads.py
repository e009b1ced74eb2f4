"""Loading and launching from several threads at once."""
from __future__ import annotations

import threading

import enigma_runtime
import numpy as np
import rt_fixtures
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture


def test_concurrent_load_and_launch(make_package):
    make_package("pkg_threads", {f"k{i}": [vector_add_kernel(name=f"k{i}")] for i in range(4)})
    errors, results = [], {}
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for rep in range(5):
                k = enigma_runtime.load("pkg_threads", f"k{(t + rep) % 4}")
                n = 300 + t
                a = np.full(n, t, np.float32)
                c = np.zeros(n, np.float32)
                k(a, a, c, n, device="cpu")
                results[(t, rep)] = bool((c == 2 * t).all())
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 40 and all(results.values())
    lib = enigma_runtime.load("pkg_threads")
    assert all(lib[f"k{i}"] is lib[f"k{i}"] for i in range(4))
